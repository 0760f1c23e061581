"""Execute the fastml notebooks top to bottom with nbclient (kernel ``python3``).

    .venv/bin/python notebooks/run_all.py                 # the real thing, outputs into notebooks/executed/
    .venv/bin/python notebooks/run_all.py --quick         # FASTML_NOTEBOOK_QUICK=1: about a minute each
    .venv/bin/python notebooks/run_all.py --inplace 01    # write outputs into the notebook itself (don't commit)

Each notebook runs with its working directory set to ``--workdir`` (default: a fresh temporary
folder), so builds and figures never land in the repository. Exits 1 if any cell raises.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def notebooks(selected: list[str] | None = None) -> list[Path]:
    """The notebooks in order, optionally only those whose name starts with one of ``selected``."""
    found = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [p for p in found if any(p.name.startswith(s) for s in selected)]
    return found


def execute(path: Path, workdir: Path, timeout_s: int = 600, quick: bool = False) -> tuple[object, float]:
    """Run ``path`` in ``workdir``; returns the executed notebook and its wall time (raises on a cell error)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("FASTML_NOTEBOOK_QUICK")
    if quick:
        os.environ["FASTML_NOTEBOOK_QUICK"] = "1"
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                       resources={"metadata": {"path": str(workdir)}}).execute()
        return nb, time.perf_counter() - t0
    finally:
        if quick:
            if env_before is None:
                os.environ.pop("FASTML_NOTEBOOK_QUICK", None)
            else:
                os.environ["FASTML_NOTEBOOK_QUICK"] = env_before


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", help="notebook name prefixes, e.g. 01 03 (default: all)")
    ap.add_argument("--quick", action="store_true", help="set FASTML_NOTEBOOK_QUICK=1 (small data, few epochs)")
    ap.add_argument("--inplace", action="store_true", help="write outputs into the notebooks themselves")
    ap.add_argument("--out", default=str(HERE / "executed"), help="folder for executed copies (default: %(default)s)")
    ap.add_argument("--workdir", help="working directory of the kernels (default: a temporary folder)")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default: %(default)s)")
    args = ap.parse_args(argv)

    import nbformat

    failed = 0
    for path in notebooks(args.only):
        workdir = Path(args.workdir or tempfile.mkdtemp(prefix=f"fastml-{path.stem}-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            nb, wall = execute(path, workdir, args.timeout, args.quick)
        except Exception as err:  # a failing cell: report it and go on with the next notebook
            failed += 1
            print(f"FAIL {path.name}: {str(err).strip().splitlines()[-1] if str(err).strip() else err}")
            continue
        target = path if args.inplace else Path(args.out) / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"ok   {path.name}: {wall:.0f} s -> {target} (figures in {workdir / 'figures'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
