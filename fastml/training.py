"""Training stage: quantisation-aware training with the EBOPs regulariser, checkpoint on the Pareto front.

``train(cfg, data)`` returns a ``TrainedModel`` whose ``predict_quantized`` is exactly what the
firmware must reproduce, bit for bit.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .keras_backend import ensure_backend

ensure_backend()

if TYPE_CHECKING:
    from .config import BuildConfig, TrainConfig
    from .data import Dataset


@dataclass
class TrainedModel:
    """A trained model ready for conversion.

    ``model`` is the quantised Keras model (``kind == "mlp"``) or the fitted ensemble (``"bdt"``).
    ``predict_quantized`` gives the outputs firmware must match (for BDTs: the float ensemble's
    margin; the fixed-point reference is built by the conifer backend at its chosen precision).
    """

    kind: Literal["mlp", "bdt"]
    model: Any
    predict_quantized: Callable[[np.ndarray], np.ndarray]
    predict_float: Callable[[np.ndarray], np.ndarray] | None
    n_classes: int
    ebops: float | None = None
    float_model: Any = None  # the unquantised twin (mlp), when trained
    history: dict[str, list[float]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)  # which checkpoint was kept, and why
    wall_s: float = 0.0


def beta_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """EBOPs strength per epoch: log-interpolated from ``beta.start`` to ``beta.end`` (linear if either is 0)."""
    from hgq.utils.sugar import PieceWiseSchedule

    start, end = cfg.beta.start, cfg.beta.end
    interp = "log" if start > 0 and end > 0 else "linear"
    last = max(cfg.epochs - 1, 1)
    return PieceWiseSchedule([(0, start, interp), (last, end, "constant")])


def select_checkpoint(records: list[dict[str, Any]], select: str, max_drop: float) -> int:
    """Index of the checkpoint to keep among Pareto ``records`` ({'val_accuracy', 'ebops'} each).

    ``best_accuracy``: the highest validation accuracy. ``smallest_within``: the fewest EBOPs among
    those within ``max_drop`` of the highest accuracy (ties: the more accurate).
    """
    if not records:
        raise ValueError("no checkpoints to choose from")
    best = max(r["val_accuracy"] for r in records)
    if select == "best_accuracy":
        return max(range(len(records)), key=lambda i: (records[i]["val_accuracy"], -records[i]["ebops"]))
    ok = [i for i, r in enumerate(records) if r["val_accuracy"] >= best - max_drop]
    return min(ok, key=lambda i: (records[i]["ebops"], -records[i]["val_accuracy"]))


def _logits_fn(model: Any, batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0))

    return predict


def train_mlp(cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
              keep_front: Path | None = None) -> TrainedModel:
    """Train the HGQ2 MLP of ``cfg.model.mlp`` (and its float twin if ``cfg.train.float_baseline``).

    Guarantees: the returned model's quantiser ranges are calibrated on the training set
    (``trace_minmax``), so its outputs are those the firmware computes; ``ebops`` is measured then.
    ``keep_front``: a folder to keep every Pareto checkpoint in (``selection["pareto"][i]["file"]``),
    e.g. to build several points of the accuracy-vs-resources trade-off from one training run.
    """
    import keras
    from hgq.utils import trace_minmax
    from hgq.utils.sugar import BetaScheduler, FreeEBOPs, ParetoFront, PBar

    from .model import build_float_mlp, build_mlp

    tc = cfg.train
    epochs = epochs or tc.epochs
    keras.utils.set_random_seed(tc.seed)
    t0 = time.perf_counter()
    model = build_mlp(cfg.model.mlp, data.n_features, data.n_classes, name=cfg.name.replace(".", "_"))
    model.compile(keras.optimizers.Adam(tc.learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    with tempfile.TemporaryDirectory(prefix="fastml-pareto-") as tmp:
        pareto = ParetoFront(Path(tmp), ["val_accuracy", "ebops"], [1, -1], fname_format="epoch={epoch}.keras")
        callbacks: list[Any] = [BetaScheduler(beta_schedule(tc)), FreeEBOPs(), pareto]
        if progress:
            callbacks.append(PBar("loss {loss:.3f}/{val_loss:.3f} acc {accuracy:.3f}/{val_accuracy:.3f}"))
        hist = model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                         batch_size=tc.batch_size, verbose=0, callbacks=callbacks)
        schedule = beta_schedule(tc)
        records: list[dict[str, Any]] = []
        for r, path in zip(pareto.record, pareto.paths, strict=True):
            epoch = int(path.stem.split("=", 1)[1])
            records.append({"val_accuracy": float(r[0]), "ebops": float(r[1]), "epoch": epoch,
                            "beta": schedule(epoch), "file": path.name})
            if keep_front is not None:
                keep_front.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, keep_front / path.name)
        chosen = select_checkpoint(records, tc.select, tc.max_accuracy_drop)
        model = keras.models.load_model(pareto.paths[chosen], compile=False)
        chosen_path = pareto.paths[chosen].name
    ebops = float(trace_minmax(model, data.x_train, batch_size=8192))

    float_model = None
    if tc.float_baseline:
        float_model = build_float_mlp(cfg.model.mlp, data.n_features, data.n_classes)
        float_model.compile(keras.optimizers.Adam(tc.learning_rate),
                            keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        float_model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs,
                        batch_size=tc.batch_size, verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)])
    history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
    return TrainedModel(
        kind="mlp",
        model=model,
        predict_quantized=_logits_fn(model),
        predict_float=_logits_fn(float_model) if float_model is not None else None,
        n_classes=data.n_classes,
        ebops=ebops,
        float_model=float_model,
        history=history,
        selection={"rule": tc.select, "max_accuracy_drop": tc.max_accuracy_drop, "pareto": records,
                   "chosen": chosen, "checkpoint": chosen_path, "epochs": epochs},
        wall_s=time.perf_counter() - t0,
    )


def train(cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True) -> TrainedModel:
    """Train the model the recipe describes (``model.kind``); ``epochs`` overrides ``train.epochs``."""
    if cfg.model.kind == "bdt":
        from .bdt import train_bdt

        return train_bdt(cfg, data)
    return train_mlp(cfg, data, epochs=epochs, progress=progress)
