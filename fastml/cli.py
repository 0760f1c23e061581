"""``fastml`` command line: parses arguments, runs a verb, turns ``FastmlError`` into one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import FastmlError

COMMAND_MODULES = (
    "fastml.commands.build",  # build, validate
    "fastml.commands.estimate",  # estimate
    "fastml.commands.check",  # check
    "fastml.commands.synth",  # synth
    "fastml.commands.data",  # data generate-jets
    "fastml.commands.scan",  # scan (Dask)
    "fastml.commands.diagnose",  # diagnose
    "fastml.commands.export",  # export
    "fastml.commands.report",  # report (report.html)
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastml", description="Quantised models to verified FPGA firmware.")


    parser.add_argument("--version", action="version", version=f"fastml {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue  # a verb group not installed in this tree; tests check the shipped set is complete
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FastmlError as err:
        print(f"fastml: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
