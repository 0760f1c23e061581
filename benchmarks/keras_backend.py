"""Keras backend: JAX vs TensorFlow training speed for the jet MLP on this CPU.

Each backend trains the same HGQ2 MLP (``fastml.models.mlp.build_mlp``, widths of ``configs/jet_tagger.yaml``)
on the same events in its own child process (``benchmarks/train_speed_child.py``). JAX runs in this
interpreter. TensorFlow runs in the interpreter given by ``--tf-python`` (e.g. a separate venv with
``tensorflow keras hgq2 numpy``), or in this one if it can import tensorflow; otherwise its row says
"not run". Steady epoch time excludes the first epoch (graph tracing / XLA compilation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .core import REPO_ROOT, Context, Row, last_line, not_run, run_child

CHILD = Path(__file__).resolve().parent / "train_speed_child.py"


def _can_import_tensorflow(python: str) -> str | None:
    """None if ``python`` can import tensorflow, else why not (one line)."""
    try:
        proc = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except (OSError, subprocess.SubprocessError) as err:
        return f"{python}: {err}"
    if proc.returncode != 0:
        return "tensorflow not installed" if "ModuleNotFoundError" in proc.stderr else last_line(proc.stderr)
    return None


def _run(ctx: Context, python: str, backend: str, epochs: int, hidden: str, max_samples: int) -> Row:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = run_child([python, str(CHILD), "--epochs", str(epochs), "--hidden", hidden,
                     "--max-samples", str(max_samples)], cwd=REPO_ROOT, env=env, timeout_s=900)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        (ctx.workdir / f"train_speed_{backend}.log").write_text(res.stdout + res.stderr)
        return not_run("keras_backend", backend, f"training failed: {last_line(res.stderr)}")
    d = json.loads(lines[-1])
    return Row("keras_backend", backend, {
        "events": d["events"], "epochs": d["epochs"], "import_s": d["import_s"], "first_epoch_s": d["first_epoch_s"],
        "steady_epoch_s": d["steady_epoch_s"], "train_events_per_s": d["train_events_per_s"],
        "predict_events_per_s": d["predict_events_per_s"], "peak_rss_mib": res.max_rss_mib,
    }, note=f"keras {d['keras']}, python {d['python']}, {python}")


def keras_group(ctx: Context) -> list[Row]:
    """Rows of the ``keras_backend`` group: jax, then tensorflow (or why it did not run)."""
    epochs, hidden, n = (3, "16", 15_000) if ctx.quick else (6, "64,32,32", 30_000)
    rows = [_run(ctx, sys.executable, "jax", epochs, hidden, n)]
    tf_python = ctx.tf_python or sys.executable
    why = _can_import_tensorflow(tf_python)
    if why is not None:
        rows.append(not_run("keras_backend", "tensorflow", why))
    else:
        rows.append(_run(ctx, tf_python, "tensorflow", epochs, hidden, n))
    ran = [r for r in rows if r.ran]
    if len(ran) == 2:
        jax, tf = (r.values["steady_epoch_s"] for r in ran)
        rows[0].note += f"; steady epoch: tensorflow/jax = {tf / jax:.2f}"
    return rows
