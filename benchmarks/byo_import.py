"""Bring your own model: import + convert + verify of the QKeras jet tagger, fastml vs the hand-written flow.

fastml: ``fastml build configs/byo_qkeras_mlp.yaml`` in a child process (the .h5 read with h5py and rebuilt
as HGQ2; hls4ml; C-simulation checked on the recipe's 10 000 events). Hand-written: the hls4ml paper's flow
(QKeras + TensorFlow + hls4ml, ``benchmarks/handwritten/hls4ml_qkeras_mlp.py``) on the same .h5 and the
same events, in the QKeras side environment named by ``FASTML_QKERAS_PYTHON`` (default
``/tmp/venv-qkeras/bin/python``, made as in ``tests/fixtures/qkeras/make_fixtures.py`` plus ``hls4ml==1.3.0``);
without it that row says "not run". Both rows come from the same run, so their ratio is measured, not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .build_time import HANDWRITTEN, _fastml_row, _handwritten_row, run_build
from .core import REPO_ROOT, Context, Row, last_line, not_run, run_child

CONFIG = REPO_ROOT / "configs" / "byo_qkeras_mlp.yaml"
QKERAS_H5 = REPO_ROOT / "tests" / "fixtures" / "qkeras" / "qkeras_mlp.h5"
DEFAULT_QKERAS_PYTHON = "/tmp/venv-qkeras/bin/python"


def _qkeras_python() -> tuple[str | None, str]:
    """The side environment's interpreter, or None and why it cannot run the hand-written flow."""
    python = os.environ.get("FASTML_QKERAS_PYTHON", DEFAULT_QKERAS_PYTHON)
    if not Path(python).is_file():
        return None, f"no QKeras environment at {python} (set FASTML_QKERAS_PYTHON)"
    probe = subprocess.run([python, "-c", "import qkeras, hls4ml, tensorflow"], capture_output=True, text=True,
                           timeout=300)
    if probe.returncode != 0:
        return None, f"{python} lacks qkeras/hls4ml/tensorflow: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
    return python, ""


def byo_group(ctx: Context) -> list[Row]:
    """Rows: fastml's import+convert+verify of the QKeras tagger, and the hand-written QKeras/hls4ml flow."""
    try:
        b = run_build(ctx, CONFIG, "byo_qkeras_mlp")
    except RuntimeError as err:
        return [not_run("byo", "qkeras_mlp: fastml build", str(err)),
                not_run("byo", "qkeras_mlp: hand-written QKeras + hls4ml", "needs the fastml build's events")]
    fastml_row = _fastml_row("qkeras_mlp: fastml build (import = train_s)", b, "hls4ml_convert", "csim_compile")
    fastml_row.group = "byo"
    rows = [fastml_row]
    python, why = _qkeras_python()
    if python is None:
        rows.append(not_run("byo", "qkeras_mlp: hand-written QKeras + hls4ml", why))
        return rows
    events = Path(b["project_dir"]) / "model" / "verify_inputs.npz"
    try:
        h = _handwritten_with(ctx, python, events)
    except RuntimeError as err:
        rows.append(not_run("byo", "qkeras_mlp: hand-written QKeras + hls4ml", str(err)))
        return rows
    row = _handwritten_row("qkeras_mlp: hand-written QKeras + hls4ml", h,
                           "benchmarks/handwritten/hls4ml_qkeras_mlp.py in the QKeras environment: load (TensorFlow),"
                           " convert, compile, predict; mismatches vs QKeras")
    row.group = "byo"
    rows.append(row)
    return rows


def _handwritten_with(ctx: Context, python: str, events: Path) -> dict[str, Any]:
    """Run the hand-written script with the QKeras environment's interpreter; its JSON line plus wall/RSS."""
    out_dir = ctx.workdir / "handwritten_qkeras"
    cmd = [python, str(HANDWRITTEN / "hls4ml_qkeras_mlp.py"), str(QKERAS_H5), str(events), str(out_dir)]
    res = run_child(cmd, cwd=ctx.workdir, timeout_s=1500)
    (ctx.workdir / "handwritten_qkeras.log").write_text(res.stdout + "\n" + res.stderr)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(f"hls4ml_qkeras_mlp.py failed (exit {res.returncode}): {last_line(res.stderr)}")
    data: dict[str, Any] = json.loads(lines[-1])
    data["wall_s"] = round(res.wall_s, 2)
    data["max_rss_mib"] = res.max_rss_mib
    return data
