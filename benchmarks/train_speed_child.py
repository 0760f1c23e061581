"""Child process for the Keras-backend benchmark: train the jet MLP for a few epochs, print timings as JSON.

    KERAS_BACKEND=jax|tensorflow PYTHON benchmarks/train_speed_child.py [--epochs N] [--hidden 64,32,32]

Runs under any interpreter with keras, hgq2 and numpy (it puts the repository on ``sys.path`` for
``fastml.models.mlp.build_mlp``, which needs nothing else), so the TensorFlow side can run from a separate
virtual environment. The model, data, batch size and optimiser are those of ``configs/jet_tagger.yaml`` (since
issue 14's narrow-start recipe: no batch norm, starting widths 3/0 and 3/3, batch 1500, Adam 5e-3; results files
from before used batch norm, HGQ2's default starts, batch 512 and Adam 3e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "fastml" / "data" / "samples" / "jets_hlf_pythia8.npz"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden", default="64,32,32")
    p.add_argument("--max-samples", type=int, default=30_000)
    p.add_argument("--batch-size", type=int, default=1500)
    args = p.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(REPO))
    t0 = time.perf_counter()
    import keras
    import numpy as np

    from fastml.models.mlp import build_mlp

    t_import = time.perf_counter() - t0
    data = np.load(SAMPLE)
    x = data["x"][: args.max_samples].astype(np.float32)
    y = data["y"][: args.max_samples].astype(np.int64)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1)
    keras.utils.set_random_seed(0)
    mlp = SimpleNamespace(hidden=[int(w) for w in args.hidden.split(",")], activation="relu", batchnorm=False,
                          beta0=1e-6, weight_overflow="SAT_SYM", datalane_overflow="WRAP", weight_bits0=3,
                          weight_int_bits0=0, data_int_bits0=3, data_frac_bits0=3)
    t0 = time.perf_counter()
    model = build_mlp(mlp, x.shape[1], int(y.max()) + 1)
    model.compile(keras.optimizers.Adam(5e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    t_build = time.perf_counter() - t0

    epoch_s: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            epoch_s.append(time.perf_counter() - self.t)

    model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=0, callbacks=[Clock()])
    t0 = time.perf_counter()
    model.predict(x, batch_size=8192, verbose=0)
    t_predict = time.perf_counter() - t0
    steady = epoch_s[1:] or epoch_s
    from importlib.metadata import PackageNotFoundError, version

    engine = keras.backend.backend()
    try:
        engine_version = version({"jax": "jax"}.get(engine, "tensorflow-cpu" if engine == "tensorflow" else engine))
    except PackageNotFoundError:
        engine_version = getattr(__import__(engine), "__version__", "?")
    print(json.dumps({
        "backend": engine, "keras": f"{keras.__version__}, {engine} {engine_version}", "python": sys.version.split()[0],
        "events": len(x), "epochs": args.epochs, "import_s": round(t_import, 3), "build_s": round(t_build, 3),
        "first_epoch_s": round(epoch_s[0], 3), "steady_epoch_s": round(sum(steady) / len(steady), 3),
        "train_events_per_s": round(len(x) / (sum(steady) / len(steady)), 1),
        "predict_events_per_s": round(len(x) / t_predict, 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
