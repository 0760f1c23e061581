"""C-simulation compile and first-use costs: today's path against fastml's, as ratios measured in one run.

Rows (the jet-tagger project the build group wrote; same generated sources for every row):

- ``build_lib.sh (hls4ml, -O3, sequential)``: hls4ml's own compile script, what ``hls_model.compile()`` ran
  before fastml compiled the sources itself (the "before" figure).
- ``fastml csim compile, cold, one unit``: ``build_csim(..., split=False)`` into an empty cache: the
  generated ``<project>.cpp`` compiled as one translation unit (fastml's path before
  ``fastml.backends.hls4ml.csim_split``).
- ``fastml csim compile, cold``: ``fastml.backends.hls4ml.csim_cache.build_csim`` into an empty cache (chosen flags, the
  translation units in parallel, ``<project>.cpp``'s DA kernels split over units where the planner
  expects a gain): what a first build pays. ``vs_one_unit`` = the one-unit row's seconds / this row's;
  ``units`` = how many units ``<project>.cpp`` became (1: not split, and ``note`` says why).
- ``fastml csim compile, cached``: the same call again (byte-identical sources): what a rebuild pays.
- ``da4ml numba kernels, cold`` / ``warm`` (full run only): ``fastml.tools.warm_jit_caches`` in a fresh
  process with an empty ``NUMBA_CACHE_DIR``, then again with that cache: the first build's first-use cost,
  which ``scripts/bootstrap.sh`` now pays at install time.

Each fastml row carries ``speedup`` = the before row's seconds / its own, both measured in this run, and
``cpu_s``: the CPU seconds (user + sys) of the compilers it ran; ``load`` is the 1-minute load average when
the row started (2 cores: above ~1 the compilers share the cores with other work).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .core import REPO_ROOT, Context, Row, not_run, run_child

_WARM = "from fastml._internal.tools import warm_jit_caches; print(warm_jit_caches())"


def _timed_build_lib(firmware: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    res = subprocess.run(["bash", "build_lib.sh"], cwd=firmware, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"build_lib.sh failed: {(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return {"compile_s": round(wall, 2), "flags": "-O3 (build_lib.sh)"}


def compile_group(ctx: Context) -> list[Row]:
    g = "csim_compile"
    items = ["build_lib.sh (hls4ml, -O3, sequential)", "fastml csim compile, cold, one unit",
             "fastml csim compile, cold", "fastml csim compile, cached",
             "da4ml numba kernels, cold (first use)", "da4ml numba kernels, warm (cached)"]
    b = ctx.shared.get("jet_build")
    if b is None:
        return [not_run(g, i, "needs the jet-tagger project from the build group, which did not run") for i in items]
    src = Path(b["project_dir"]) / "firmware"
    project = b["firmware"].get("project_name") or "jet_tagger"
    if not (src / f"{project}_bridge.cpp").is_file():
        return [not_run(g, i, f"{src} is not an hls4ml project (backend {b.get('backend')})") for i in items]
    from fastml import csim_cache

    work = ctx.workdir / "csim_compile"
    copy = work / "project"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("*.so", "*.o"))
    rows: list[Row] = []
    try:
        before = _timed_build_lib(copy)
        rows.append(Row(g, items[0], {**before, "speedup": 1.0}, note="hls4ml's compile script as generated"))
    except RuntimeError as err:
        before = None
        rows.append(not_run(g, items[0], str(err)))
    old = os.environ.get(csim_cache.CACHE_ENV)
    os.environ[csim_cache.CACHE_ENV] = str(work / "cache")  # an empty cache: the first build's figure
    one_unit_s = None
    try:
        # one unit first: its own cache key (split=False), so the split row below is a miss too
        for item, expect_hit, split in ((items[1], False, False), (items[2], False, True), (items[3], True, True)):
            load = os.getloadavg()[0]
            cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            build = csim_cache.build_csim(copy, project, copy / "firmware" / f"{project}-bench.so", split=split)
            cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_s = cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime
            values: dict[str, Any] = {"compile_s": round(build.compile_s, 2), "cpu_s": round(cpu_s, 1),
                                      "units": build.units, "load": round(load, 1), "flags": " ".join(build.flags)}
            if before is not None:
                values["speedup"] = round(before["compile_s"] / build.compile_s, 1)
            if not split:
                one_unit_s = build.compile_s
            elif not expect_hit and one_unit_s is not None:
                values["vs_one_unit"] = round(one_unit_s / build.compile_s, 2)
            note = f"cache {'hit' if build.cache_hit else 'miss'}"
            if build.cache_hit != expect_hit:
                note += f" (expected {'hit' if expect_hit else 'miss'})"
            if not build.cache_hit:
                note += f"; {build.units_note}"
            rows.append(Row(g, item, values, note=note))
    except Exception as err:  # ToolError: the sources did not compile
        rows.append(not_run(g, items[len(rows)], str(err)))
    finally:
        if old is None:
            os.environ.pop(csim_cache.CACHE_ENV, None)
        else:
            os.environ[csim_cache.CACHE_ENV] = old
    if ctx.quick:
        why = "full run only (the cold numba compile takes about a minute on 2 cores)"
        return [*rows, not_run(g, items[4], why), not_run(g, items[5], why)]
    env = {**os.environ, "NUMBA_CACHE_DIR": str(work / "numba")}
    times: list[float] = []
    for item in items[4:]:
        res = run_child([sys.executable, "-c", _WARM], cwd=REPO_ROOT, env=env, timeout_s=1200)
        if res.returncode != 0:
            rows.append(not_run(g, item, f"warm_jit_caches failed (exit {res.returncode})"))
            return rows
        times.append(res.wall_s)
        values = {"compile_s": round(res.wall_s, 2)}
        if len(times) == 2:
            values["speedup"] = round(times[0] / times[1], 1)
        rows.append(Row(g, item, values, note="process wall time incl. imports; NUMBA_CACHE_DIR empty, then reused"))
    return rows
