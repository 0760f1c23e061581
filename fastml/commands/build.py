"""``fastml build`` and ``fastml validate``."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="train, convert, verify and report a build recipe (YAML)")
    p.add_argument("config", help="build recipe, e.g. configs/jet_tagger.yaml")
    p.add_argument("--quick", action="store_true",
                   help="same path on a few epochs and ~15k events (still verifies >= 1000 events)")
    p.add_argument("--output-dir", help="parent folder of the project (overrides firmware.output_dir)")
    p.add_argument("--plots", action="store_true", help="also save PNG plots into the project's plots/ folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (CI logs)")
    p.add_argument("--force", action="store_true",
                   help="build even a model with more weights than firmware.max_weights")
    p.set_defaults(func=run_build)

    v = sub.add_parser("validate", help="check a build recipe without building anything")
    v.add_argument("config")
    v.set_defaults(func=run_validate)


def _overrides(args: argparse.Namespace) -> dict:
    return {"firmware": {"output_dir": args.output_dir}} if getattr(args, "output_dir", None) else {}


def run_validate(args: argparse.Namespace) -> int:
    from ..recipe import load_config

    cfg = load_config(args.config)
    print(f"{args.config}: ok — {cfg.name}: model {cfg.model.kind} -> {cfg.firmware.backend} "
          f"({cfg.firmware.part}, {cfg.firmware.clock_period_ns} ns), data {cfg.data.source}, "
          f"project {cfg.project_dir}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from ..pipeline import build, summary_lines
    from ..recipe import load_config

    cfg = load_config(args.config, _overrides(args))
    report = build(cfg, quick=args.quick, progress=not args.no_progress and sys.stderr.isatty(),
                   log=lambda m: print(m, file=sys.stderr), force=args.force)
    if args.plots:
        from ..report.plots import save_build_plots

        save_build_plots(cfg.project_dir)
    print("\n".join(summary_lines(report)))
    print(f"report: {cfg.project_dir / 'report.json'}")
    return 0
