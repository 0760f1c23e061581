"""``fastml estimate CONFIG|PROJECT_DIR``: re-run the open-tool estimates (da4ml, yosys) on a built project."""

from __future__ import annotations

import argparse

HELP = "re-run latency/resource estimates (da4ml cost, yosys synth_xilinx) on a built project"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("estimate", help=HELP, description=HELP + "; updates its report.json and report.md.")
    p.add_argument("target", metavar="CONFIG|PROJECT_DIR",
                   help="a build config YAML (its project <output_dir>/<name>/ is used) or a project folder")
    p.add_argument("--no-yosys", action="store_true", help="skip the yosys synthesis (it takes minutes for big nets)")
    p.set_defaults(func=run_estimate)


def run_estimate(args: argparse.Namespace) -> int:
    from ..estimate import estimate_project
    from ..pipeline import write_html_report
    from . import resolve_project

    project_dir, cfg = resolve_project(args.target)
    report = estimate_project(project_dir, cfg, run_yosys=not args.no_yosys)
    write_html_report(project_dir, report)  # the page shows the new figures too
    print(f"{project_dir}: estimates for {report.name} ({report.backend})")
    lat = report.latency
    print(f"  latency [{lat.source}]: {lat.cycles} cycles, {lat.ns} ns, II {lat.ii}")
    for source, res in report.resources.items():
        print(f"  resources [{source}]: LUT {res.lut}, FF {res.ff}, DSP {res.dsp}, BRAM {res.bram}")
    for what, note in report.firmware.get("estimates", {}).items():
        if note != "ok":
            print(f"  {what}: {note}")
    return 0
