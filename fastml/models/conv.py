"""``kind: conv`` — an HGQ2 conv net on the calorimeter-region image, trained to reproduce a teacher's anomaly score.

Teacher-student, as CMS's CICADA does: the teacher is the autoencoder recipe named by ``model.teacher`` (trained
here on the same events' trigger objects, or loaded from ``model.teacher_model``); the student regresses
log(1 + teacher score) from the 18 x 14 calorimeter-region ET image, on Standard Model events only. Its output
is itself the anomaly score, so the report gives its efficiency at fixed trigger rate and ROC AUC per signal,
and its agreement with the teacher (Pearson, Spearman, mean absolute error).

Layers: a reshape to (phi, eta, 1), an optional ``input_pool`` x ``input_pool`` average of the regions (2: the
18 x 14 image becomes 9 x 7, a quarter of the multipliers in every layer after it; the divisor is a power of two,
so the average is exact in fixed point), quantised 2-D convolutions (valid padding, ReLU) each followed by
``pool_size`` max pooling, a flatten, quantised dense layers, one linear output. A Level-1 student must fit a few
thousand to ~20k LUT: the recipe pools the input, keeps few filters and ramps the EBOPs regulariser to 1e-4.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from .._internal.model_files import load_keras_model
from ..data import load_data
from ..errors import ConfigError
from ..metrics import efficiency_at_rates, teacher_agreement
from ..recipe import load_config
from . import kind_of
from .autoencoder import anomaly_task_metrics, check_anomaly_source, require_anomaly_data, sm_rows
from .network import HGQSection, NetworkKind

if TYPE_CHECKING:
    import keras

    from ..data import Dataset
    from ..recipe import BuildConfig
    from .base import TrainedModel


class ConvSection(HGQSection):
    """HGQ2 conv net on an image: filters per conv layer, kernel, pooling, dense widths, teacher."""

    kind: Literal["conv"] = "conv"
    filters: list[Annotated[int, Field(gt=0, le=64)]] = Field(default=[4, 8])
    kernel_size: int = Field(3, gt=0, le=7)
    pool_size: int = Field(2, ge=1, le=4)
    input_pool: int = 1  # average of input_pool x input_pool regions before the first conv (1: none)
    dense: list[Annotated[int, Field(gt=0, le=256)]] = Field(default=[16])
    teacher: str  # an autoencoder recipe (path relative to this recipe): the score the student learns
    teacher_model: str | None = None  # that recipe's built model.keras (encoder + score); None: train it here

    @field_validator("input_pool")
    @classmethod
    def _power_of_two_pool(cls, v: int) -> int:
        # an average over 3 x 3 = 9 regions divides by 9: not exact in fixed point, so firmware would differ
        if v not in (1, 2, 4):
            raise ValueError(f"must be 1, 2 or 4 (an average over a power-of-two number of regions is exact in "
                             f"fixed point), got {v!r}")
        return v


def _student_mse(y_true: Any, y_pred: Any) -> Any:
    import keras

    return keras.ops.mean(keras.ops.square(y_pred - keras.ops.reshape(y_true, keras.ops.shape(y_pred))), axis=-1)


def student_mse(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error of the student's output against the teacher's log(1 + score)."""
    return _student_mse(y_true, y_pred)


class Conv(NetworkKind):
    name = "conv"
    Section = ConvSection
    summary = "HGQ2 conv net on the calorimeter-region image, trained to reproduce an autoencoder's score"
    layout = None  # an image (rows, columns): checked in check_data
    backends = ("rtl",)
    backend_notes: ClassVar[dict[str, str]] = {
        "hls4ml": "the conv student is built and verified through da4ml RTL only; its hls4ml conversion "
                  "(2-D convolutions under distributed arithmetic) is not verified here"}
    task: ClassVar[str] = "anomaly_detection"
    monitor = ("val_student_mse", -1)
    progress_format = "loss {loss:.3f}/{val_loss:.3f} mse {student_mse:.3f}/{val_student_mse:.3f}"
    section: ConvSection

    def __init__(self, section: ConvSection) -> None:
        super().__init__(section)
        self._targets: dict[str, np.ndarray] = {}

    def _teacher_path(self, cfg: BuildConfig) -> Path:
        return (cfg.config_dir / self.section.teacher).resolve()

    def check_section(self, cfg: BuildConfig) -> str | None:
        why = check_anomaly_source(cfg)
        if why is not None:
            return why
        if cfg.data.source == "builtin:anomaly_objects" or cfg.data.source.startswith("adc2021:"):
            return (f"key 'data.source': model.kind 'conv' reads the calorimeter image (builtin:anomaly_calo), "
                    f"got {cfg.data.source!r} (trigger objects: use model.kind 'autoencoder')")
        teacher = self._teacher_path(cfg)
        if not teacher.is_file():
            return f"key 'model.teacher': recipe {teacher} does not exist (expected an autoencoder recipe)"

        try:
            tcfg = load_config(teacher)
        except ConfigError as err:
            return f"key 'model.teacher': {err}"
        if tcfg.model.kind != "autoencoder":
            return f"key 'model.teacher': {teacher} has model.kind {tcfg.model.kind!r}, expected 'autoencoder'"
        if tcfg.data.source != "builtin:anomaly_objects" or cfg.data.source != "builtin:anomaly_calo":
            return ("key 'model.teacher': the teacher must read builtin:anomaly_objects and the student "
                    "builtin:anomaly_calo (the same events)")
        if tcfg.data.split != cfg.data.split or tcfg.data.max_samples != cfg.data.max_samples:
            return (f"key 'data.split': the student's split and max_samples must equal the teacher's ({teacher}), "
                    "so both see the same events in each split")
        if self.section.teacher_model is not None and not (cfg.config_dir / self.section.teacher_model).is_file():
            return f"key 'model.teacher_model': {cfg.config_dir / self.section.teacher_model} does not exist"
        return None

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        if len(input_shape) != 2:
            return (f"model.kind 'conv' takes an image (rows, columns) per event, got events of shape "
                    f"{input_shape} (use data.source builtin:anomaly_calo)")
        k, p, p0 = self.section.kernel_size, self.section.pool_size, self.section.input_pool
        rows, cols = input_shape[0] // p0, input_shape[1] // p0
        for i in range(len(self.section.filters)):
            rows, cols = (rows - k + 1) // p, (cols - k + 1) // p
            if rows < 1 or cols < 1:
                pooled = f" averaged {p0} x {p0} (model.input_pool)" if p0 > 1 else ""
                return (f"model.filters: {i + 1} conv+pool stages of kernel {k} and pool {p} shrink the "
                        f"{input_shape} image to nothing{pooled}; use fewer layers or a smaller kernel")
        return None

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        import keras
        from hgq.layers import QAvgPool2D, QConv2D, QDense, QMaxPool2D

        sec = self.section
        inputs = keras.Input(input_shape, name="calo")
        x = keras.layers.Reshape((*input_shape, 1), name="channels")(inputs)
        if sec.input_pool > 1:  # coarser regions first: every later layer sees 1/input_pool^2 of the positions
            x = QAvgPool2D(sec.input_pool, name="input_pool")(x)
        for i, n in enumerate(sec.filters):
            x = QConv2D(n, sec.kernel_size, activation="relu", name=f"conv_{i}")(x)
            if sec.pool_size > 1:
                x = QMaxPool2D(sec.pool_size, name=f"pool_{i}")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        for i, width in enumerate(sec.dense):
            x = QDense(width, activation="relu", name=f"dense_{i}")(x)
        out = QDense(1, name="score")(x)
        return keras.Model(inputs, out, name=name)

    def compile_model(self, model: Any, learning_rate: float) -> None:
        import keras

        model.compile(keras.optimizers.Adam(learning_rate), _student_mse, metrics=[student_mse])

    def fit_arrays(self, cfg: BuildConfig, data: Dataset) -> tuple[np.ndarray, Any, np.ndarray, Any]:
        sm_train, sm_val = data.y_train == 0, data.y_val == 0
        return (sm_rows(data, "train"), self._targets["train"][sm_train],
                sm_rows(data, "val"), self._targets["val"][sm_val])

    def float_metric(self, float_model: Any, cfg: BuildConfig, data: Dataset) -> float:
        pred = np.asarray(float_model.predict(sm_rows(data, "val"), batch_size=8192, verbose=0))[:, 0]
        return float(np.mean((pred - self._targets["val"][data.y_val == 0]) ** 2))

    def teacher_scores(self, cfg: BuildConfig, data: Dataset, epochs: int | None, progress: bool
                       ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """log(1 + teacher score) for every event of each split, and where the teacher came from."""

        tcfg = load_config(self._teacher_path(cfg))
        n_events = len(data.y_train) + len(data.y_val) + len(data.y_test)
        tdata = load_data(tcfg.data, tcfg.config_dir, max_samples=n_events)
        for split in ("train", "val", "test"):  # the same events, or the targets would be someone else's
            if not np.array_equal(getattr(tdata, f"y_{split}"), getattr(data, f"y_{split}")):
                raise ConfigError(f"{cfg.source_path or '<config>'}: key 'model.teacher': the teacher's {split} "
                                  "split holds other events than the student's (different data or split)")
        if self.section.teacher_model is not None:
            model = load_keras_model(cfg.config_dir / self.section.teacher_model)
            predict = lambda x: np.asarray(model.predict(x, batch_size=8192, verbose=0))  # noqa: E731
            info = {"recipe": str(self._teacher_path(cfg)), "model": self.section.teacher_model}
        else:
            trained = kind_of(tcfg).train(tcfg, tdata, epochs=epochs, progress=progress)
            predict = trained.predict_quantized
            info = {"recipe": str(self._teacher_path(cfg)), "model": "trained in this build",
                    "ebops": trained.ebops, "epochs": trained.selection.get("epochs")}
        scores = {s: np.log1p(np.maximum(predict(getattr(tdata, f"x_{s}"))[:, 0], 0.0)).astype(np.float32)
                  for s in ("train", "val", "test")}
        return scores, info

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
              keep_front: Any = None) -> TrainedModel:
        require_anomaly_data(cfg, data)
        self._targets, info = self.teacher_scores(cfg, data, epochs, progress)
        trained = super().train(cfg, data, epochs=epochs, progress=progress, keep_front=keep_front)
        trained.n_classes = 1
        trained.selection["teacher"] = info
        # the teacher's test-split scores travel with the model: the report compares the student with them
        trained.selection["_teacher_test"] = self._targets["test"]
        return trained

    def task_metrics(self, trained: TrainedModel, scores: dict[str, np.ndarray], labels: np.ndarray,
                     data: Dataset) -> tuple[dict[str, float | None], dict[str, Any]]:
        """The student's efficiency at rate and AUC per signal (like the autoencoder's), the teacher's on the
        same test events, and the student-teacher agreement per level."""

        teacher = np.asarray(trained.selection.pop("_teacher_test"))
        levels = {**scores, "quantized_test_split": trained.predict_quantized(data.x_test)}
        ys = {**{k: labels for k in scores}, "quantized_test_split": data.y_test}
        headline, task = anomaly_task_metrics(levels, ys, data.class_names)
        headline.pop("quantized_test_split")
        task["agreement"] = {level: teacher_agreement(s, teacher[: len(s)]) for level, s in levels.items()}
        task["teacher"] = efficiency_at_rates(teacher, data.y_test, data.class_names)
        task["teacher_target"] = "log(1 + teacher score), regressed on Standard Model events"
        return headline, task
