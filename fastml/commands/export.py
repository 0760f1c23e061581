"""``fastml export PROJECT_DIR [--out FILE.tar.gz]``: a built project as one bundle for the firmware integrator."""

from __future__ import annotations

import argparse

HELP = ("bundle a built project for integration: firmware (HDL, or the HLS project), testbench and vectors, README "
        "with the interface and simulator commands, checksums")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help=HELP, description=HELP + "; the same project gives byte-identical "
                              "bundles. rtl, hls4ml and conifer (vhdl, xilinxhls) projects.")
    p.add_argument("project", metavar="PROJECT_DIR", help="a built project folder (hls_projects/<name>/)")
    p.add_argument("--out", metavar="FILE.tar.gz", default=None,
                   help="where to write the bundle (default: PROJECT_DIR-export.tar.gz beside the project)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..export import export_project

    out = export_project(Path(args.project), Path(args.out) if args.out else None)
    print(f"{args.project}: exported to {out}")
    return 0
