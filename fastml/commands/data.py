"""``fastml data generate-jets``: make a jet dataset with Pythia 8 + FastJet (optional extra), optionally with
each jet's leading constituents (``--particles N``); ``fastml data generate-anomaly``: the event-level
anomaly-detection sample (:mod:`fastml.data.anomaly`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data utilities")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")
    g = dsub.add_parser("generate-jets",
                        help="generate the 5-class jet dataset (needs the 'generate' extra of fastml-trigger)")
    g.add_argument("--per-class", type=int, required=True, help="jets per class (g, q, W, Z, t)")
    g.add_argument("--out", required=True, help="output .npz file")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--workers", type=int, default=2)
    g.add_argument("--particles", type=int, default=0, metavar="N",
                   help="also keep each jet's leading N constituents (writes a jet-constituents file; "
                   "default 0: the 16 features only)")
    g.set_defaults(func=run_generate_jets)
    a = dsub.add_parser("generate-anomaly",
                        help="generate the anomaly-detection event sample: SM cocktail + BSM signals as Level-1 "
                        "trigger objects and calorimeter regions (needs the 'generate' extra of fastml-trigger)")
    a.add_argument("--sm", type=int, required=True, help="Standard Model events (ADC2021 cocktail fractions)")
    a.add_argument("--per-signal", type=int, required=True, help="events per BSM signal")
    a.add_argument("--out", required=True, help="output .npz file")
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--workers", type=int, default=2)
    a.add_argument("--cache-dir", help="keep finished chunks here: an interrupted run resumes")
    a.add_argument("--from-cache", action="store_true",
                   help="generate nothing: assemble the chunks in --cache-dir, SM cut to the cocktail fractions")
    a.set_defaults(func=run_generate_anomaly)
    f = dsub.add_parser("fetch", help="download a published data set into the cache the loaders read "
                        "(checksum verified, atomic, resumable)")
    f.add_argument("source", help="openml:42468 or zenodo:<record>/<file>")
    f.add_argument("--cache-dir", help="data root (default: $FASTML_DATA_DIR or ~/.cache/fastml)")
    f.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    import sys

    from ..data.fetch import fetch, resolve

    remote = resolve(args.source, Path(args.cache_dir) if args.cache_dir else None)
    path = fetch(remote, log=lambda m: print(m, file=sys.stderr))
    print(path)
    return 0


def run_generate_jets(args: argparse.Namespace) -> int:
    from ..data.jets import generate_jets, save_table
    from ..errors import DataError

    if args.per_class <= 0:
        raise DataError(f"--per-class must be a positive number of jets, got {args.per_class}")
    if args.particles < 0:
        raise DataError(f"--particles must be 0 (features only) or a positive number of constituents, "
                        f"got {args.particles}")
    if args.particles:
        from ..data.constituents import save_constituents
        from ..data.jets import generate_jet_constituents

        sample = generate_jet_constituents(args.per_class, seed=args.seed, workers=args.workers,
                                           n_particles=args.particles)
        save_constituents(sample, Path(args.out))
        print(f"wrote {len(sample.y)} jets with their leading {args.particles} constituents to {args.out}")
        return 0
    table = generate_jets(args.per_class, seed=args.seed, workers=args.workers)
    save_table(table, Path(args.out))
    print(f"wrote {len(table.y)} jets to {args.out}")
    return 0


def run_generate_anomaly(args: argparse.Namespace) -> int:
    from ..data.anomaly import generate_events, save_events
    from ..errors import DataError

    if args.sm <= 0 or args.per_signal <= 0:
        raise DataError(f"--sm and --per-signal must be positive numbers of events, got {args.sm}, {args.per_signal}")
    if args.from_cache and not args.cache_dir:
        raise DataError("--from-cache needs --cache-dir (the folder of an earlier run's chunks)")
    sample = generate_events(args.sm, args.per_signal, seed=args.seed, workers=args.workers,
                             cache_dir=args.cache_dir, cached_only=args.from_cache)
    save_events(sample, Path(args.out))
    print(f"wrote {sample.n_events} events ({int((sample.y == 0).sum())} SM) to {args.out}")
    return 0
