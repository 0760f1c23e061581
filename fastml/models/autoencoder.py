"""``kind: autoencoder`` — an HGQ2 autoencoder on trigger objects whose firmware is the encoder plus the anomaly score.

Trained on Standard Model events only (class 0, ``"sm"``) to reconstruct its input, with the latent mean
pulled towards the origin by ``latent_weight`` x sum(mu^2) — the mean part of a VAE's KL term. The anomaly
score is that latent norm, score = sum_i mu_i^2, as deployed Level-1 AD triggers (AXOL1TL) compute it from
the encoder alone: the decoder is only for training, so the firmware (and ``predict_quantized``) is the
encoder + score sub-model built from the same trained quantised layers.

Layers: quantised dense (batch norm fused) encoder -> ``latent`` (QDense, mu) -> ``latent_sq``
(QMultiply mu*mu) -> ``score`` (a frozen all-ones QDense: the sum, in a form both da4ml and hls4ml's
distributed-arithmetic flow take; hls4ml's DA flow has no handler for QSum) -> one output per event.

``variational: true`` makes it a VAE (as AXOL1TL): the encoder also gives log sigma (``latent_log_sigma``),
the decoder reads z = mu + sigma * eps during training (eps from a Keras ``GaussianNoise`` layer, off at
inference: z = mu), and ``latent_weight`` weighs the full KL term 0.5 * sum(mu^2 + sigma^2 - 1 - 2 log sigma)
instead of sum(mu^2) alone. The firmware is unchanged: encoder -> mu -> sum(mu^2); log sigma only trains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError
from ..metrics import BUNCH_CROSSING_HZ, efficiency_at_rates, mean_signal_auc
from .mlp import dense_stack
from .network import HGQSection, NetworkKind

if TYPE_CHECKING:
    import keras

    from ..data import Dataset
    from ..recipe import BuildConfig
    from .base import TrainedModel

#: What an anomaly-detection recipe must read: event-level trigger objects with an "sm" class first.
AD_SOURCES_HINT = "builtin:anomaly_objects, adc2021:<folder>, or a file whose class 0 is the Standard Model"


class AutoencoderSection(HGQSection):
    """HGQ2 autoencoder: encoder/decoder widths, latent size, latent penalty."""

    kind: Literal["autoencoder"] = "autoencoder"
    encoder: list[Annotated[int, Field(gt=0, le=1024)]] = Field(default=[32, 16])
    latent: int = Field(3, gt=0, le=256)
    decoder: list[Annotated[int, Field(gt=0, le=1024)]] = Field(default=[16, 32])
    activation: Literal["relu"] = "relu"
    batchnorm: bool = True
    latent_weight: float = Field(0.1, ge=0)  # strength of the sum(mu^2) pull (variational: of the whole KL term)
    variational: bool = False  # a VAE: sampled latent and KL term in training; the firmware stays mu -> sum(mu^2)


def _recon_loss(n_inputs: int, latent_weight: float, variational: bool = False) -> Any:
    """MSE of the reconstruction (the first ``n_inputs`` outputs) + ``latent_weight`` x the score column
    (variational: x the KL divergence from N(0, 1), whose log sigma are the columns after the score)."""
    import keras

    def ae_loss(y_true: Any, y_pred: Any) -> Any:
        err = keras.ops.mean(keras.ops.square(y_pred[:, :n_inputs] - y_true), axis=-1)
        if not variational:
            return err + latent_weight * y_pred[:, n_inputs]
        log_sigma = y_pred[:, n_inputs + 1:]
        kl = 0.5 * (y_pred[:, n_inputs] + keras.ops.sum(keras.ops.exp(2 * log_sigma) - 1 - 2 * log_sigma, axis=-1))
        return err + latent_weight * kl

    return ae_loss


def _recon_mse(n_inputs: int) -> Any:
    import keras

    def recon_mse(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square(y_pred[:, :n_inputs] - y_true), axis=-1)

    return recon_mse


def sm_rows(data: Dataset, split: str) -> np.ndarray:
    """Standard Model events (label 0) of split ``split`` ("train" | "val" | "test")."""
    return getattr(data, f"x_{split}")[getattr(data, f"y_{split}") == 0]


def require_anomaly_data(cfg: BuildConfig, data: Dataset) -> None:
    """One-line ConfigError unless class 0 of the data is the Standard Model and there are signals."""

    if not data.class_names or data.class_names[0].lower() not in ("sm", "background"):
        raise ConfigError(f"{cfg.source_path or '<config>'}: key 'data.source': anomaly detection needs "
                          f"event data whose class 0 is the Standard Model ('sm'), got classes "
                          f"{list(data.class_names)[:6]} ({AD_SOURCES_HINT})")


def check_anomaly_source(cfg: BuildConfig) -> str | None:
    """Why the recipe's data cannot feed an anomaly-detection model (jet samples), or None."""
    src = cfg.data.source
    if src.startswith(("builtin:", "openml:")) and src not in ("builtin:anomaly_objects", "builtin:anomaly_calo"):
        return (f"key 'data.source': model.kind {cfg.model.kind!r} is an anomaly-detection model, trained on "
                f"Standard Model events; {src!r} holds jets, not events (use {AD_SOURCES_HINT})")
    return None


class Autoencoder(NetworkKind):
    name = "autoencoder"
    Section = AutoencoderSection
    summary = "HGQ2 autoencoder on trigger objects; firmware = encoder + latent-norm anomaly score"
    task: ClassVar[str] = "anomaly_detection"
    monitor = ("val_recon_mse", -1)
    progress_format = "loss {loss:.3f}/{val_loss:.3f} mse {recon_mse:.3f}/{val_recon_mse:.3f}"
    section: AutoencoderSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        why = check_anomaly_source(cfg)
        if why is not None:
            return why
        if cfg.data.source == "builtin:anomaly_calo":
            return ("key 'data.source': model.kind 'autoencoder' reads trigger objects (builtin:anomaly_objects); "
                    "the calorimeter image is for model.kind 'conv'")
        return None

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        why = super().check_data(input_shape, n_classes)
        if why is not None:
            return why
        if self.section.latent >= input_shape[0]:
            return (f"model.latent {self.section.latent} must be smaller than the {input_shape[0]} input features "
                    "(an autoencoder compresses its input)")
        return None

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        """Encoder -> mu -> score, and mu -> decoder -> reconstruction; output = [reconstruction, score]."""
        import keras
        from hgq.layers import QDense, QMultiply


        sec = self.section
        n_in = input_shape[0]
        inputs = keras.Input((n_in,), name="features")
        x = dense_stack(inputs, sec.encoder, sec.activation, sec.batchnorm, prefix="enc")
        mu = QDense(sec.latent, name="latent")(x)
        squares = QMultiply(name="latent_sq")([mu, mu])
        # the sum as a frozen all-ones dense layer: exact (the weights 1 are representable), and a layer
        # hls4ml's distributed-arithmetic flow and da4ml both convert
        score = QDense(1, use_bias=False, kernel_initializer="ones", trainable=False, name="score")(squares)
        d, extra = mu, []
        if sec.variational:
            # z = mu + sigma * eps from Keras's own layers (no custom code in the saved model): GaussianNoise
            # adds eps ~ N(0, 1) in training only, so eps = noisy - log_sigma, and z = mu at inference
            log_sigma = QDense(sec.latent, kernel_initializer="zeros", name="latent_log_sigma")(x)
            noisy = keras.layers.GaussianNoise(1.0, name="latent_noise")(log_sigma)
            eps = keras.layers.Subtract(name="latent_eps")([noisy, log_sigma])
            sigma = keras.layers.Activation("exponential", name="latent_sigma")(log_sigma)
            d = keras.layers.Add(name="latent_z")([mu, keras.layers.Multiply(name="latent_spread")([sigma, eps])])
            extra = [log_sigma]
        for i, width in enumerate(sec.decoder):
            d = QDense(width, activation=sec.activation, name=f"dec_{i}")(d)
        recon = QDense(n_in, name="reconstruction")(d)
        out = keras.layers.Concatenate(name="ae_outputs")([recon, score, *extra])
        return keras.Model(inputs, out, name=name)

    def compile_model(self, model: Any, learning_rate: float) -> None:
        import keras

        n_in = int(model.input_shape[-1])
        model.compile(keras.optimizers.Adam(learning_rate),
                      _recon_loss(n_in, self.section.latent_weight, self.section.variational),
                      metrics=[_recon_mse(n_in)])

    def fit_arrays(self, cfg: BuildConfig, data: Dataset) -> tuple[np.ndarray, Any, np.ndarray, Any]:
        require_anomaly_data(cfg, data)
        x_train, x_val = sm_rows(data, "train"), sm_rows(data, "val")
        return x_train, x_train, x_val, x_val

    def deployed(self, model: Any) -> Any:
        """The encoder + score sub-model (same layers, same weights): what the trigger runs."""
        import keras

        return keras.Model(model.inputs, model.get_layer("score").output, name=f"{model.name}_encoder_score")

    def float_metric(self, float_model: Any, cfg: BuildConfig, data: Dataset) -> float:
        x_val = sm_rows(data, "val")
        rec = np.asarray(float_model.predict(x_val, batch_size=8192, verbose=0))[:, : x_val.shape[1]]
        return float(np.mean((rec - x_val) ** 2))

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
              keep_front: Any = None) -> TrainedModel:
        trained = super().train(cfg, data, epochs=epochs, progress=progress, keep_front=keep_front)
        trained.n_classes = 1  # one output: the anomaly score
        return trained

    def task_metrics(self, trained: TrainedModel, scores: dict[str, np.ndarray], labels: np.ndarray,
                     data: Dataset) -> tuple[dict[str, float | None], dict[str, Any]]:
        """Efficiency at 1 and 10 kHz and ROC AUC per signal for each score level; headline: mean signal AUC.

        Adds ``quantized_test_split``: the quantised model on the whole test split (more SM events for the
        rate thresholds than the verified subset; the firmware's figures where it is bit-exact).
        """
        levels = {**scores, "quantized_test_split": trained.predict_quantized(data.x_test)}
        ys = {**{k: labels for k in scores}, "quantized_test_split": data.y_test}
        headline, task = anomaly_task_metrics(levels, ys, data.class_names)
        headline.pop("quantized_test_split")
        return headline, task


def anomaly_task_metrics(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray] | np.ndarray,
                         class_names: tuple[str, ...]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """(mean signal AUC per level, {"task", "headline", "levels": {level: efficiency_at_rates(...)}})."""

    levels: dict[str, Any] = {}
    headline: dict[str, float | None] = {}
    for level, s in scores.items():
        y = labels[level] if isinstance(labels, dict) else labels
        levels[level] = efficiency_at_rates(s, y, class_names)
        headline[level] = mean_signal_auc(levels[level])
    return headline, {"task": "anomaly_detection", "headline": "mean ROC AUC of the signals against SM",
                      "bunch_crossing_hz": BUNCH_CROSSING_HZ, "levels": levels}
