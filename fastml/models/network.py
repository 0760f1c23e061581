"""HGQ2 network kinds: the training every one of them shares.

A network kind only says how to build its quantised model and its float twin (``build`` /
``build_float``); ``NetworkKind.train`` does the rest: quantisation-aware training with the EBOPs
regulariser (strength ramped by ``train.beta``), every epoch on the accuracy-vs-EBOPs Pareto front
kept, one checkpoint chosen by ``train.select``, quantiser ranges calibrated on the training set.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from .._internal.keras_backend import ensure_backend
from .base import ModelKind, ModelSection, TrainedModel

if TYPE_CHECKING:
    import keras

    from ..data import Dataset
    from ..recipe import BuildConfig, TrainConfig


def beta_schedule(cfg: TrainConfig) -> Callable[[int], float]:
    """EBOPs strength per epoch: log-interpolated from ``beta.start`` to ``beta.end`` (linear if either is 0)."""
    from hgq.utils.sugar import PieceWiseSchedule

    start, end = cfg.beta.start, cfg.beta.end
    interp = "log" if start > 0 and end > 0 else "linear"
    last = max(cfg.epochs - 1, 1)
    return PieceWiseSchedule([(0, start, interp), (last, end, "constant")])


def float_epoch_cap(cfg: TrainConfig, epochs_override: int | None = None) -> int:
    """At most how many epochs the float twin trains: ``float_epochs`` (else ``epochs``), never more
    than an override of the quantisation-aware run's epochs (``--quick``'s 3 epochs cap both runs)."""
    cap = cfg.float_epochs or cfg.epochs
    return min(cap, epochs_override) if epochs_override else cap


#: Slack in ``select_checkpoint``'s "within max_drop" comparison: float32 rounding, not a real margin.
_SCORE_TOLERANCE = 1e-6


def select_checkpoint(records: list[dict[str, Any]], select: str, max_drop: float,
                      float_accuracy: float | None = None, key: str = "val_accuracy", sign: int = 1) -> int:
    """Index of the checkpoint to keep among Pareto ``records`` ({'val_accuracy', 'ebops'} each).

    ``best_accuracy``: the highest validation accuracy. ``smallest_within``: the fewest EBOPs among
    those within ``max_drop`` of the highest quantised accuracy. ``smallest_within_float``: the fewest
    EBOPs among those within ``max_drop`` of the float twin's validation accuracy
    (``float_accuracy``); if none is that close, the most accurate. Ties: the more accurate.
    ``key``/``sign``: the ranked metric and its direction (1: higher is better, -1: lower, e.g. a loss);
    "accuracy" above then reads "that metric, signed".
    """
    if not records:
        raise ValueError("no checkpoints to choose from")
    score = [sign * r[key] for r in records]
    best = max(score)
    most_accurate = max(range(len(records)), key=lambda i: (score[i], -records[i]["ebops"]))
    if select == "best_accuracy":
        return most_accurate
    if select == "smallest_within_float":
        if float_accuracy is None:
            raise ValueError("select 'smallest_within_float' needs the float twin's accuracy")
        reference = sign * float_accuracy
    else:
        reference = best
    # Keras reports accuracies in float32 (6785/10 000 reads 0.67849999...): without a tolerance far below one
    # event, a checkpoint exactly max_drop below the reference would be refused by rounding alone.
    ok = [i for i in range(len(records)) if score[i] >= reference - max_drop - _SCORE_TOLERANCE]
    if not ok:
        return most_accurate
    return min(ok, key=lambda i: (records[i]["ebops"], -score[i]))


def logits_fn(model: Any, batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """``x -> model outputs`` as a NumPy array (batched, no progress output)."""

    def predict(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0))

    return predict


class NetworkKind(ModelKind):
    """Base of the HGQ2 network kinds (classifiers with logits outputs).

    A kind defines ``architecture`` (its layers; ``build`` and ``build_float`` open the quantised or
    pass-through quantiser scopes around it) or overrides ``build`` and ``build_float`` themselves.
    """

    family = "network"
    #: The validation metric the Pareto front keeps (against EBOPs) and ``train.select`` ranks, and its
    #: direction (1: higher is better, -1: lower). Classifiers: accuracy; e.g. an autoencoder: its loss.
    monitor: tuple[str, int] = ("val_accuracy", 1)
    progress_format: str = "loss {loss:.3f}/{val_loss:.3f} acc {accuracy:.3f}/{val_accuracy:.3f}"

    def compile_model(self, model: Any, learning_rate: float) -> None:
        """Optimiser, loss and metrics (classifiers: cross entropy on logits, accuracy)."""
        _compile(model, learning_rate)

    def fit_arrays(self, cfg: BuildConfig, data: Dataset) -> tuple[np.ndarray, Any, np.ndarray, Any]:
        """(x_train, targets_train, x_val, targets_val) the network is fitted on (classifiers: the labels)."""
        return data.x_train, data.y_train, data.x_val, data.y_val

    def deployed(self, model: Any) -> Any:
        """The part of the trained network that runs in the trigger (what firmware reproduces): all of it here."""
        return model

    def float_metric(self, float_model: Any, cfg: BuildConfig, data: Dataset) -> float:
        """The float twin's value of ``monitor`` on the validation split (classifiers: accuracy)."""
        scores = logits_fn(float_model)(data.x_val)
        return float(np.mean(scores.argmax(axis=1) == data.y_val))

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        """The network built from HGQ2 layers, under whatever quantiser scopes the caller opened."""
        raise NotImplementedError(f"model kind {self.name!r} defines neither architecture() nor build()")

    def build(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "model") -> keras.Model:
        """The quantised HGQ2 model (EBOPs regulariser on, strength ``beta0`` until scheduled)."""
        with contextlib.ExitStack() as stack:
            for scope in quantizer_scopes(self.section):
                stack.enter_context(scope)
            return self.architecture(input_shape, n_outputs, name)

    def build_float(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "float_model") -> keras.Model:
        """The unquantised twin of ``build``: the same layers with HGQ2's pass-through ("dummy") quantisers."""
        from hgq.config import LayerConfigScope, QuantizerConfigScope

        with QuantizerConfigScope(place="all", default_q_type="dummy"), LayerConfigScope(enable_ebops=False):
            return self.architecture(input_shape, n_outputs, name)

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
              keep_front: Path | None = None) -> TrainedModel:
        """Quantisation-aware training of ``build``'s model (and the float twin if ``train.float_baseline``).

        Guarantees: the returned model's quantiser ranges are calibrated on the training set
        (``trace_minmax``), so its outputs are those the firmware computes; ``ebops`` is measured then.
        ``keep_front``: a folder to keep every Pareto checkpoint in (``selection["pareto"][i]["file"]``),
        e.g. to build several points of the accuracy-vs-resources trade-off from one training run.
        """
        ensure_backend()
        import keras
        from hgq.utils import trace_minmax
        from hgq.utils.sugar import BetaScheduler, FreeEBOPs, ParetoFront, PBar

        tc = cfg.train
        float_epochs = float_epoch_cap(tc, epochs)
        epochs = epochs or tc.epochs
        input_shape = tuple(data.x_train.shape[1:])
        keras.utils.set_random_seed(tc.seed)
        t0 = time.perf_counter()
        model = self.build(input_shape, data.n_classes, name=cfg.name.replace(".", "_").replace("-", "_"))
        self.compile_model(model, tc.learning_rate)
        metric, sign = self.monitor
        x_fit, t_fit, x_val, t_val = self.fit_arrays(cfg, data)
        with tempfile.TemporaryDirectory(prefix="fastml-pareto-") as tmp:
            pareto = ParetoFront(Path(tmp), [metric, "ebops"], [sign, -1], fname_format="epoch={epoch}.keras")
            callbacks: list[Any] = [BetaScheduler(beta_schedule(tc)), FreeEBOPs(), pareto]
            if progress:
                callbacks.append(PBar(self.progress_format))
            hist = model.fit(x_fit, t_fit, validation_data=(x_val, t_val), epochs=epochs,
                             batch_size=tc.batch_size, verbose=0, callbacks=callbacks)
            float_model, float_val_accuracy, float_epochs_run = None, None, 0
            if tc.float_baseline or tc.select == "smallest_within_float":
                float_model, float_val_accuracy, float_epochs_run = self._train_float(cfg, data, float_epochs)
            schedule = beta_schedule(tc)
            records: list[dict[str, Any]] = []
            for r, path in zip(pareto.record, pareto.paths, strict=True):
                epoch = int(path.stem.split("=", 1)[1])
                records.append({metric: float(r[0]), "ebops": float(r[1]), "epoch": epoch,
                                "beta": schedule(epoch), "file": path.name})
                if keep_front is not None:
                    keep_front.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, keep_front / path.name)
            chosen = select_checkpoint(records, tc.select, tc.max_accuracy_drop, float_val_accuracy, metric, sign)
            model = self.deployed(keras.models.load_model(pareto.paths[chosen], compile=False))
            chosen_path = pareto.paths[chosen].name
        ebops = float(trace_minmax(model, x_fit, batch_size=8192))
        history = {k: [float(v) for v in vs] for k, vs in hist.history.items()}
        selection = {"rule": tc.select, "max_accuracy_drop": tc.max_accuracy_drop, "pareto": records,
                     "chosen": chosen, "checkpoint": chosen_path, "epochs": epochs}
        if float_val_accuracy is not None:
            selection["float_val_accuracy"] = float_val_accuracy
            selection["float_epochs"] = float_epochs_run
        return TrainedModel(
            kind=self.name, model=model, predict_quantized=logits_fn(model),
            predict_float=logits_fn(self.deployed(float_model)) if float_model is not None else None,
            n_classes=data.n_classes, ebops=ebops, float_model=float_model, history=history,
            selection=selection, wall_s=time.perf_counter() - t0, family="network",
        )

    def _train_float(self, cfg: BuildConfig, data: Dataset, epochs: int) -> tuple[Any, float, int]:
        """The float twin, trained with early stopping for at most ``epochs`` epochs.

        Returns it, its validation accuracy and the number of epochs it ran.
        """
        import keras

        tc = cfg.train
        float_model = self.build_float(tuple(data.x_train.shape[1:]), data.n_classes)
        self.compile_model(float_model, tc.learning_rate)
        x_fit, t_fit, x_val, t_val = self.fit_arrays(cfg, data)
        hist = float_model.fit(x_fit, t_fit, validation_data=(x_val, t_val), epochs=epochs,
                               batch_size=tc.batch_size, verbose=0,
                               callbacks=[keras.callbacks.EarlyStopping(patience=10, restore_best_weights=True)])
        return float_model, self.float_metric(float_model, cfg, data), len(hist.history["loss"])


def _compile(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


class HGQSection(ModelSection):
    """Quantiser settings every HGQ2 network kind shares."""

    beta0: float = Field(1e-5, ge=0)  # EBOPs strength before train.beta's schedule takes over
    weight_overflow: Literal["SAT_SYM", "SAT", "WRAP"] = "SAT_SYM"
    datalane_overflow: Literal["WRAP", "SAT", "SAT_SYM"] = "WRAP"
    # Where the trainable bit widths start (HGQ2's b0/i0 of weights and biases, i0/f0 of data); unset: HGQ2's
    # defaults (weights 8 bits, 2 integer; data 2 integer + 6 fractional). Narrow starts, as in HGQ2's own
    # jet-tagger example (3/0 and 3/3), let the EBOPs regulariser begin near the small end of the front.
    weight_bits0: int | None = Field(None, ge=1, le=24)
    weight_int_bits0: int | None = Field(None, ge=-16, le=16)
    data_int_bits0: int | None = Field(None, ge=-16, le=16)
    data_frac_bits0: int | None = Field(None, ge=-16, le=24)


def quantizer_scopes(section: Any) -> list[Any]:
    """HGQ2 config scopes for ``section``: trainable fixed-point weights (``kbi``) and data (``kif``)."""
    from hgq.config import LayerConfigScope, QuantizerConfigScope

    def given(**widths: int | None) -> dict[str, int]:  # only what the recipe sets: HGQ2's defaults otherwise
        return {k: v for k, v in widths.items() if v is not None}

    weights = given(b0=section.weight_bits0, i0=section.weight_int_bits0)
    data = given(i0=section.data_int_bits0, f0=section.data_frac_bits0)
    return [QuantizerConfigScope(place="all", default_q_type="kbi", overflow_mode=section.weight_overflow, **weights),
            QuantizerConfigScope(place="datalane", default_q_type="kif", overflow_mode=section.datalane_overflow,
                                 **data),
            LayerConfigScope(enable_ebops=True, beta0=section.beta0)]
