"""Child process of the ``scan`` benchmark: one way of running the same scan, timed, as one JSON line.

    python -m benchmarks.scan_child SCAN_YAML OUT_DIR sequential          # a for loop in this process
    python -m benchmarks.scan_child SCAN_YAML OUT_DIR dask --workers N    # fastml.scan.run_scan, LocalCluster

Both run the same per-point function (``fastml.scan.worker.run_point``: train + da4ml estimate, the
point's project written atomically); the sequential loop just calls it without Dask, with the
workers' one-thread environment so the comparison isolates Dask's cost.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

T0 = time.perf_counter()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scan")
    ap.add_argument("out")
    ap.add_argument("mode", choices=["sequential", "dask"])
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    from fastml.recipe import read_yaml
    from fastml.scan import expand, load_scan, run_scan
    from fastml.scan.worker import WORKER_ENV, run_point

    spec = load_scan(args.scan)
    if args.mode == "sequential":
        for key, value in WORKER_ENV.items():
            os.environ[key] = value  # before the first jax import (run_point imports it)
        points = expand(spec, args.out)
        folder = points[0].cfg.project_dir.parent
        ctx = {"scan": spec.name, "run_id": "sequential", "quick": True, "scan_dir": str(folder),
               "base_raw": read_yaml(spec.base_path), "base_path": str(spec.base_path), "synth": False}
        t0 = time.perf_counter()
        rows = [run_point({**ctx, "phase": "estimate", "point": p.name, "varied": p.varied,
                           "overrides": p.overrides, "log_file": str(folder / "logs" / f"{p.name}.log")})
                for p in points]
        wall = time.perf_counter() - t0
        statuses = [r["status"] for r in rows]
        point_walls = [r["wall_s"] for r in rows]
    else:
        t0 = time.perf_counter()
        result = run_scan(spec, quick=True, output_dir=args.out, workers=args.workers, log=lambda m: None)
        wall = time.perf_counter() - t0
        statuses = result.table["status"].tolist()
        point_walls = result.table["wall_s_estimate"].tolist()
    print(json.dumps({"mode": args.mode, "workers": args.workers, "points": len(statuses),
                      "ok": statuses.count("ok"), "wall_s": round(wall, 2),
                      "sum_point_wall_s": round(float(sum(point_walls)), 2),
                      "process_wall_s": round(time.perf_counter() - T0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
