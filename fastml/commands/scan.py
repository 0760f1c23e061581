"""``fastml scan``: vary a build recipe, run every point on Dask, collect one table and a Pareto plot."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="run a scan (base recipe + keys to vary) on Dask: train+estimate all points, "
                                    "firmware for the Pareto front",
                       description="Run every point of a scan YAML on a Dask cluster (a LocalCluster on this "
                                   "machine unless --scheduler or the scan's cluster: section says otherwise); "
                                   "write scan.parquet, scan.csv and pareto.png into <output_dir>/<scan name>/. "
                                   "Exit 0: every point ok; 1: at least one point failed; 2: bad input.")
    p.add_argument("config", help="scan YAML, e.g. configs/jet_tagger_scan.yaml")
    p.add_argument("--workers", type=int, help="local cluster: worker processes (default: the cores); "
                                               "cluster: section: jobs")
    p.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--resume", action="store_true",
                   help="skip points whose project already holds a report with the same config hash")
    p.add_argument("--quick", action="store_true", help="as for fastml build: few epochs, ~15k events per point")
    p.add_argument("--output-dir", help="parent folder of the scan folder (default: the base recipe's "
                                        "firmware.output_dir)")
    p.add_argument("--local", action="store_true", help="ignore the scan's cluster: section; use a LocalCluster")
    p.add_argument("--dry-run", action="store_true", help="validate and list the points; run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (a line per point instead)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..scan import expand, load_scan, run_scan, summary_lines

    spec = load_scan(args.config)
    if args.dry_run:
        points = expand(spec, args.output_dir)
        for p in points:
            print(f"{p.name}: {p.label or '(fixed keys only)'} -> {p.cfg.project_dir}")
        print(f"{args.config}: ok — {len(points)} point(s), phase 2: {spec.phase2.build}")
        return 0
    result = run_scan(spec, quick=args.quick, output_dir=args.output_dir, workers=args.workers,
                      scheduler=args.scheduler, resume=args.resume, use_cluster_section=not args.local,
                      progress=not args.no_progress and sys.stderr.isatty(),
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print("\n".join(summary_lines(result)))
    return 1 if result.counts["failed"] else 0
