"""Entry point: ``python -m benchmarks run [--quick] [--only GROUP ...] [--tf-python PATH] [--results-dir DIR]``."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

from .core import (
    RESULTS_DIR,
    Context,
    Group,
    load_average,
    machine_info,
    render_table,
    results_path,
    results_payload,
    run_groups,
    write_results,
)


def all_groups() -> dict[str, Group]:
    """The benchmark groups, in run order (build first: verify and memory reuse its project)."""
    from .build_time import build_group, memory_group
    from .byo_import import byo_group
    from .compilers import compilers_group
    from .csim_compile import compile_group
    from .firmware_quality import quality_group
    from .keras_backend import keras_group
    from .model_kinds import kinds_group
    from .peer_models import peer_group
    from .scan_speed import scan_group
    from .training_quality import training_group
    from .verify_throughput import verify_group

    return {"build": build_group, "verify": verify_group, "csim_compile": compile_group, "memory": memory_group,
            "quality": quality_group, "keras_backend": keras_group, "scan": scan_group, "training": training_group,
            "kinds": kinds_group,
            "byo": byo_group, "peer_models": peer_group, "compilers": compilers_group}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    r = sub.add_parser("run", help="run the benchmarks, print the table, write the JSON results")
    r.add_argument("--quick", action="store_true", help="small models and few epochs (< 3 min on 2 cores)")
    r.add_argument("--only", nargs="+", metavar="GROUP", help="run only these groups (build verify "
                   "csim_compile memory quality keras_backend scan training kinds byo peer_models compilers); "
                   "verify and csim_compile need build; byo's hand-written row runs in "
                   "FASTML_QKERAS_PYTHON (default /tmp/venv-qkeras/bin/python)")
    r.add_argument("--tf-python", "--python", dest="tf_python",
                   help="interpreter with tensorflow+keras+hgq2 for the TensorFlow row (default: this one)")
    r.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=f"where the JSON goes (default {RESULTS_DIR})")
    r.add_argument("--keep-workdir", action="store_true", help="keep the scratch folder (projects, logs)")
    args = p.parse_args(argv)

    groups = all_groups()
    if args.only:
        unknown = [g for g in args.only if g not in groups]
        if unknown:
            p.error(f"--only: unknown group(s) {', '.join(unknown)}; expected some of {', '.join(groups)}")
        groups = {k: v for k, v in groups.items() if k in args.only}

    started = dt.datetime.now(dt.timezone.utc)
    workdir = Path(tempfile.mkdtemp(prefix="fastml-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir, tf_python=args.tf_python)
    machine = machine_info()
    load_start = load_average()
    try:
        rows, walls = run_groups(groups, ctx)
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    load_end = load_average()
    payload = results_payload(rows, walls, args.quick, machine, load_start, load_end,
                              started.isoformat(timespec="seconds"),
                              {"total_wall_s": round(sum(walls.values()), 1),
                               "workdir": str(workdir) if args.keep_workdir else None})
    path = write_results(payload, results_path(args.results_dir, args.quick, started))
    print(f"fastml benchmarks ({'quick' if args.quick else 'full'}) {started:%Y-%m-%d %H:%M} UTC, "
          f"{machine['cpu_model']}, {machine['cpu_cores']} cores, {machine['ram_gib']} GiB, "
          f"python {machine['python']}, "
          f"load average {load_start} -> {load_end}")
    print(render_table(rows))
    print("group wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in walls.items())
          + f"; total {sum(walls.values()):.0f}s")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
