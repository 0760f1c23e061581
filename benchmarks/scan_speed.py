"""Scan throughput: the same 8-point quick scan run sequentially in one process, on a Dask LocalCluster with
1 and with 2 worker processes, and with 1 worker confined to one core, all in one benchmark run.

Reported: wall time and CPU seconds of each; the speed-up of 2 workers over 1; the scaling with cores
(1 worker on 1 core vs 2 workers on 2 cores; aim >= 1.7); and Dask's per-point overhead = (1-worker wall -
sequential wall) / points: cluster start, task shipping, one fresh worker process's imports, result
collection. Why both ratios: JAX runs one point on several threads, so on a 2-core machine one worker
already keeps both cores partly busy (``cores_busy`` of its row) and a second worker can only add the rest.
Phase 1 only (train + da4ml estimate, the part of a scan every point runs), so the front's size does not
change the work between the runs. The scan is ``fastml scan --quick`` of a small jet tagger (widths [8] /
[16] x 4 beta draws); ``--quick`` of the benchmarks also caps the data at 5 000 jets.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

import yaml

from .core import REPO_ROOT, Context, Row, last_line, not_run, run_child

N_POINTS = 8


def _write_scan(ctx: Context) -> Path:
    """The benchmark's scan YAML (and its base recipe) in the scratch folder."""
    base = yaml.safe_load((REPO_ROOT / "configs" / "jet_tagger.yaml").read_text())
    base["name"] = "bench_scan_base"
    base["train"]["float_baseline"] = False
    if ctx.quick:
        base["data"]["max_samples"] = 5000
    base_path = ctx.workdir / "scan_base.yaml"
    base_path.write_text(yaml.safe_dump(base, sort_keys=False))
    scan = {"name": "bench_scan", "base": base_path.name, "fixed": {"verify.samples": 1000},
            "scan": {"grid": {"model.hidden": [[8], [16]]},
                     "random": {"samples": N_POINTS // 2, "seed": 0,
                                "params": {"train.beta.end": {"log_uniform": [1e-6, 1e-4]}}}},
            "phase2": {"build": "none"}}
    path = ctx.workdir / "bench_scan.yaml"
    path.write_text(yaml.safe_dump(scan, sort_keys=False))
    return path


#: Runs ``python -m ...`` with this process's CPU affinity narrowed to the given cores (inherited by every
#: process the child starts: the LocalCluster's workers too). JAX sizes its thread pools from the affinity
#: mask, which is the one way to keep it on fewer cores (XLA_FLAGS thread limits do not hold in JAX 0.10).
_PINNED = "import os, sys; os.sched_setaffinity(0, {int(c) for c in sys.argv[1].split(',')}); " \
          "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run(ctx: Context, scan: Path, mode: str, workers: int, cores: list[int] | None = None) -> dict[str, Any] | str:
    tag = f"scan_{mode}_{workers}" + (f"_cores{len(cores)}" if cores else "")
    cmd = ["-m", "benchmarks.scan_child", str(scan), str(ctx.workdir / tag), mode, "--workers", str(workers)]
    cmd = [sys.executable, "-c", _PINNED, ",".join(map(str, cores)), *cmd] if cores else [sys.executable, *cmd]
    cpu0 = _children_cpu_s()
    res = run_child(cmd, cwd=REPO_ROOT, timeout_s=2400)
    # CPU seconds of the child and every process it waited for (the cluster's workers are joined at close)
    cpu_s = _children_cpu_s() - cpu0
    (ctx.workdir / f"{tag}.log").write_text(res.stdout + "\n" + res.stderr)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return f"{mode} ({workers} worker(s)) failed (exit {res.returncode}): {last_line(res.stderr)}"
    d = json.loads(lines[-1])
    if d["ok"] != d["points"]:
        return f"{mode} ({workers} worker(s)): only {d['ok']} of {d['points']} points ok (log {tag}.log)"
    d["cpu_s"] = round(cpu_s, 1)
    d["cores_busy"] = round(cpu_s / d["process_wall_s"], 2) if d["process_wall_s"] else None
    return d


def scan_group(ctx: Context) -> list[Row]:
    """Rows of the ``scan`` group: sequential, Dask 1 worker, Dask 2 workers; notes carry the ratios."""
    scan = _write_scan(ctx)
    one_core = [min(os.sched_getaffinity(0))]
    runs = {("sequential", 1, 0): "sequential, one process",
            ("dask", 1, 0): "dask LocalCluster, 1 worker",
            ("dask", 2, 0): "dask LocalCluster, 2 workers",
            ("dask", 1, 1): "dask LocalCluster, 1 worker on 1 core"}
    measured: dict[tuple[str, int, int], dict[str, Any]] = {}
    rows: list[Row] = []
    for (mode, workers, pinned), item in runs.items():
        d = _run(ctx, scan, mode, workers, one_core if pinned else None)
        if isinstance(d, str):
            rows.append(not_run("scan", item, d))
            continue
        measured[(mode, workers, pinned)] = d
        rows.append(Row("scan", item, {"points": d["points"], "wall_s": d["wall_s"],
                                       "s_per_point": round(d["wall_s"] / d["points"], 2),
                                       "sum_point_wall_s": d["sum_point_wall_s"],
                                       "process_wall_s": d["process_wall_s"],
                                       "cpu_s": d["cpu_s"], "cores_busy": d["cores_busy"]}))
        if mode == "dask" and workers == 1 and not pinned:
            # Dask's own share, whatever the load does to the points themselves: the run's wall minus
            # the time its points spent inside run_point (1 worker: they run one after another)
            rows[-1].values["scheduling_s_per_point"] = round((d["wall_s"] - d["sum_point_wall_s"]) / d["points"], 2)
    by_item = {r.item: r for r in rows}
    one, two = measured.get(("dask", 1, 0)), measured.get(("dask", 2, 0))
    seq, one_pinned = measured.get(("sequential", 1, 0)), measured.get(("dask", 1, 1))
    if one and two:
        row = by_item[runs[("dask", 2, 0)]]
        row.values["speedup_vs_1_worker"] = round(one["wall_s"] / two["wall_s"], 2)
        row.note = ("1 worker already keeps ~cores_busy cores busy (JAX threads): more workers can only add the "
                    "rest of the machine")
    if one_pinned and two:
        row = by_item[runs[("dask", 1, 1)]]
        row.values["speedup_2_cores_vs_1_core"] = round(one_pinned["wall_s"] / two["wall_s"], 2)
        row.note = "scaling with cores: this wall / the 2-worker wall on 2 cores (aim >= 1.7)"
    if one and seq:
        row = by_item[runs[("dask", 1, 0)]]
        row.values["dask_overhead_s_per_point"] = round((one["wall_s"] - seq["wall_s"]) / one["points"], 2)
        row.note = "overhead = (this - sequential) / points"
    return rows
