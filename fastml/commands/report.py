"""``fastml report PROJECT_DIR [--open] [--baseline OLD]``: (re-)render a built project's ``report.html``."""

from __future__ import annotations

import argparse

HELP = "render a built project's report.html (self-contained: opens offline, from a CI artifact or an e-mail)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", help=HELP, description=HELP + ". Every build writes it; this re-renders it "
                              "(e.g. after fastml diagnose / estimate / synth) or compares two builds side by side.")
    p.add_argument("project", metavar="PROJECT_DIR", help="a built project folder (hls_projects/<name>/ or "
                   "<name>.failed/) or its report.json")
    p.add_argument("--baseline", metavar="OLD",
                   help="another build to compare with (its folder, its report.json, or a folder holding "
                        "<name>/report.json); written to PROJECT_DIR/report-vs-baseline.html unless --out")
    p.add_argument("--out", metavar="FILE.html", help="where to write the page (default: PROJECT_DIR/report.html)")
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import FastmlError
    from ..pipeline import write_html_report
    from ..report import load_report
    from .check import _find_baseline

    target = Path(args.project)
    project_dir = target.parent if target.is_file() else target
    report = load_report(target)
    baseline = None
    if args.baseline:
        found = _find_baseline(Path(args.baseline), report.name)
        if found is None:
            raise FastmlError(f"{args.baseline}: no report.json here; expected a project folder, its report.json, "
                              f"or a folder holding {report.name}/report.json")
        baseline = load_report(found)
    out = Path(args.out) if args.out else (project_dir / "report-vs-baseline.html" if baseline is not None else None)
    path = write_html_report(project_dir, report, baseline=baseline, out=out)
    print(f"{report.name}: {path}")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print(f"  --open: no web browser found here; open {path} by hand")
    return 0
