"""``fastml diagnose PROJECT_DIR``: find the first layer where the firmware diverges from the quantised model."""

from __future__ import annotations

import argparse

HELP = "compare a built project's firmware with its quantised model layer by layer; name the first divergence"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("diagnose", help=HELP, description=HELP + ". Writes <project>/diagnosis.json; "
                              "exit 1 if a layer diverges, 2 if the comparison could not run (the reason is printed "
                              "as 'not run: ...').")
    p.add_argument("target", metavar="CONFIG|PROJECT_DIR",
                   help="a project folder (hls_projects/<name>/ or <name>.failed/) or its build config YAML")
    p.add_argument("--events", type=int, default=None, metavar="N",
                   help="diagnose the first N saved verification events (default 2000)")
    p.add_argument("--inputs", metavar="NPZ", help="events to use instead: an .npz with key 'x' (scaled features)")
    p.add_argument("--plot", metavar="PNG", help="also save a bar chart of differing elements per layer")
    p.set_defaults(func=run_diagnose)


def run_diagnose(args: argparse.Namespace) -> int:
    from ..diagnose import DEFAULT_EVENTS, DIAGNOSIS_FILE, diagnose
    from . import resolve_project

    project_dir, _ = resolve_project(args.target)
    events = args.events if args.events is not None else (None if args.inputs else DEFAULT_EVENTS)
    diag = diagnose(project_dir, events=events, inputs=args.inputs)
    print("\n".join(diag.lines()))
    print(f"  written: {project_dir / DIAGNOSIS_FILE}")
    if (project_dir / "report.json").is_file():  # the page shows the diagnosis: bring it up to date
        from ..errors import FastmlError
        from ..pipeline import write_html_report
        from ..report import load_report

        try:  # the diagnosis stands on its own: a page that cannot be refreshed never changes its exit code
            print(f"  page: {write_html_report(project_dir, load_report(project_dir))}")
        except FastmlError as err:
            print(f"  page: not refreshed ({err})")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        diag.plot().figure.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"  plot: {args.plot}")
    if diag.diverges:
        return 1
    return 2 if diag.not_run else 0  # a comparison that could not run must not read as "no divergence"
