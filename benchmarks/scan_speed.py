"""Scan throughput: the same 8-point quick scan run sequentially in one process, and on a Dask
LocalCluster with 1 and with 2 worker processes, all in one benchmark run.

Reported: wall time of each, the speed-up of 2 workers over 1 (aim: >= 1.7 on 2 cores), and Dask's
per-point overhead = (1-worker wall - sequential wall) / points: cluster start, task shipping, one
fresh worker process's imports, result collection. Phase 1 only (train + da4ml estimate, the part of a
scan every point runs), so the front's size does not change the work between the three runs. The
scan is ``fastml scan --quick`` of a small jet tagger (widths [8] / [16] x 4 beta draws); ``--quick`` of
the benchmarks also caps the data at 5 000 jets.
"""

from __future__ import annotations

import json
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


def _run(ctx: Context, scan: Path, mode: str, workers: int) -> dict[str, Any] | str:
    tag = f"scan_{mode}_{workers}"
    res = run_child([sys.executable, "-m", "benchmarks.scan_child", str(scan), str(ctx.workdir / tag), mode,
                     "--workers", str(workers)], cwd=REPO_ROOT, timeout_s=2400)
    (ctx.workdir / f"{tag}.log").write_text(res.stdout + "\n" + res.stderr)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        return f"{mode} ({workers} worker(s)) failed (exit {res.returncode}): {last_line(res.stderr)}"
    d = json.loads(lines[-1])
    if d["ok"] != d["points"]:
        return f"{mode} ({workers} worker(s)): only {d['ok']} of {d['points']} points ok (log {tag}.log)"
    return d


def scan_group(ctx: Context) -> list[Row]:
    """Rows of the ``scan`` group: sequential, Dask 1 worker, Dask 2 workers; notes carry the ratios."""
    scan = _write_scan(ctx)
    runs = {("sequential", 1): "sequential, one process", ("dask", 1): "dask LocalCluster, 1 worker",
            ("dask", 2): "dask LocalCluster, 2 workers"}
    measured: dict[tuple[str, int], dict[str, Any]] = {}
    rows: list[Row] = []
    for (mode, workers), item in runs.items():
        d = _run(ctx, scan, mode, workers)
        if isinstance(d, str):
            rows.append(not_run("scan", item, d))
            continue
        measured[(mode, workers)] = d
        rows.append(Row("scan", item, {"points": d["points"], "wall_s": d["wall_s"],
                                       "s_per_point": round(d["wall_s"] / d["points"], 2),
                                       "sum_point_wall_s": d["sum_point_wall_s"],
                                       "process_wall_s": d["process_wall_s"]}))
        if mode == "dask" and workers == 1:
            # Dask's own share, whatever the load does to the points themselves: the run's wall minus
            # the time its points spent inside run_point (1 worker: they run one after another)
            rows[-1].values["scheduling_s_per_point"] = round((d["wall_s"] - d["sum_point_wall_s"]) / d["points"], 2)
    one, two, seq = measured.get(("dask", 1)), measured.get(("dask", 2)), measured.get(("sequential", 1))
    if one and two:
        rows[2].values["speedup_vs_1_worker"] = round(one["wall_s"] / two["wall_s"], 2)
        rows[2].note = "aim >= 1.7 on 2 cores"
    if one and seq:
        rows[1].values["dask_overhead_s_per_point"] = round((one["wall_s"] - seq["wall_s"]) / one["points"], 2)
        rows[1].note = "overhead = (this - sequential) / points"
    return rows
