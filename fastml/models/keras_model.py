"""``kind: keras`` — any Keras model file, built as it is or quantised from a float model.

The importer is found from the file's content (``fastml.models.keras_files``): a Keras 3 ``.keras`` archive
(HGQ2 or plain Keras: loaded by Keras; QKeras v3 layers: rebuilt as kind ``qkeras`` does), a Keras 2 ``.h5``
(QKeras: as kind ``qkeras``; an HGQ 1 proxy: ``fastml.models.hgq1_proxy``, bit-exact; plain float layers: rebuilt
as a Keras 3 float model), or hls4ml's ``X.json`` + ``X_weights.h5`` pair (either file named). No TensorFlow.

``model: {kind: keras, path: my_model.keras}``: the model's arithmetic is the user's. Nothing is
trained; HGQ2 quantiser ranges are re-calibrated on the training set (``trace_minmax``) only when
``calibrate: true``; the report's ``model.selection`` records ``train: skipped (...)`` and whether it
was calibrated. Layers are checked against the chosen backend before any compilation (one line naming
the layer, its class and the backend, and a backend that can build it).

``quantize: true`` takes a float Keras model instead: each Dense / Conv1D / Conv2D / EinsumDense /
BatchNormalization becomes its HGQ2 counterpart of the same shape, initialised from the float
weights, and ``NetworkKind.train`` runs the usual quantisation-aware training with the EBOPs
regulariser from there (the float model itself is the float baseline; a final softmax is dropped,
as fastml's networks output logits: it is monotonic, so the trigger decision does not need it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError
from ..metrics import accuracy
from .float_edges import FloatEdge
from .imported import (
    ImportedSection,
    check_activations,
    check_io,
    check_quantised,
    loaded_model,
    model_path,
)
from .keras_files import build_source, check_keras_file, copy_sources, import_proxy, read_keras_file
from .network import HGQSection, NetworkKind, logits_fn, quantizer_scopes
from .qkeras_model import QKerasModel

if TYPE_CHECKING:
    import keras

    from ..data import Dataset
    from ..recipe import BuildConfig
    from .base import TrainedModel


class KerasSection(ImportedSection, HGQSection):
    """A saved Keras 3 model: HGQ2 (built as it is) or float (``quantize: true``: HGQ2 training from it).

    ``beta0`` and the overflow modes apply only with ``quantize: true``.
    """

    kind: Literal["keras"] = "keras"
    calibrate: bool = False  # re-run HGQ2's trace_minmax on the training set before building
    quantize: bool = False  # a float model: rebuild with HGQ2 layers and run quantisation-aware training
    trust_code: bool = False  # allow Lambda layers (arbitrary Python code in the file): only for files you trust


#: float Keras layer -> HGQ2 layer of the same shapes (``quantize: true``).
_HGQ_COUNTERPART = {"Dense": "QDense", "Conv1D": "QConv1D", "Conv2D": "QConv2D", "EinsumDense": "QEinsumDense",
                    "BatchNormalization": "QBatchNormalization", "MaxPooling1D": "QMaxPooling1D",
                    "MaxPooling2D": "QMaxPooling2D", "AveragePooling1D": "QAveragePooling1D",
                    "AveragePooling2D": "QAveragePooling2D"}
#: Weights copied from a float layer into its HGQ2 counterpart.
_WEIGHT_NAMES = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def _is_softmax(layer: Any) -> bool:
    act = getattr(layer, "activation", None)
    return type(layer).__name__ == "Softmax" or getattr(act, "__name__", "") == "softmax"


def _bypassed(layer: Any, last: Any) -> bool:
    """Layers the rebuilt model leaves out: dropout (inference: identity), linear activations, a final softmax."""
    name = type(layer).__name__
    if name in ("Dropout", "GaussianNoise", "GaussianDropout", "AlphaDropout"):
        return True
    if name == "Activation" and getattr(layer.activation, "__name__", "") == "linear":
        return True
    return layer is last and name in ("Softmax", "Activation") and _is_softmax(layer)


def rebuild(float_model: Any, quantised: bool, scopes: list[Any] | None = None) -> Any:
    """A copy of ``float_model`` without dropout and final softmax; with ``quantised``, HGQ2 layers of the same
    shapes (initialised from the float weights) inside HGQ2 config ``scopes``.

    Raises ``ConfigError`` naming a layer with weights that has no HGQ2 counterpart.
    """
    import keras
    from hgq import layers as hl

    last = float_model.layers[-1]
    mapped: dict[str, Any] = {}

    def clone(layer: Any) -> Any:
        cfg = layer.get_config()
        name = type(layer).__name__
        if layer is last and _is_softmax(layer) and "activation" in cfg:
            cfg["activation"] = "linear"  # logits: see the module docstring
        if quantised and name in _HGQ_COUNTERPART:
            new = getattr(hl, _HGQ_COUNTERPART[name]).from_config(
                {k: v for k, v in cfg.items() if k not in ("lora_rank", "lora_alpha", "quantization_config")})
            mapped[layer.name] = (layer, new)
            return new
        if quantised and layer.weights:
            raise ConfigError(f"layer {layer.name!r} ({name}) has weights but no HGQ2 counterpart fastml knows "
                              f"(expected one of: {', '.join(_HGQ_COUNTERPART)})")
        if name == "Activation" and getattr(layer.activation, "__name__", "") == "relu":
            return keras.layers.ReLU(name=layer.name)  # ReLU: a layer both hls4ml and da4ml take
        new = type(layer).from_config(cfg)
        if layer.weights:
            mapped[layer.name] = (layer, new)
        return new

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        if _bypassed(layer, last):
            return args[0]
        return layer(*args, **kwargs)

    def clone_all() -> Any:
        if isinstance(float_model, keras.Sequential):  # clone_model's call_function is for functional models only
            kept = [clone(layer) for layer in float_model.layers if not _bypassed(layer, last)]
            return keras.Sequential([keras.Input(float_model.input_shape[1:]), *kept], name=float_model.name)
        return keras.models.clone_model(float_model, clone_function=clone, call_function=call)

    if scopes:
        with scopes[0], scopes[1], scopes[2]:
            model = clone_all()
    else:
        model = clone_all()
    for old, new in mapped.values():
        for attr in _WEIGHT_NAMES:
            src, dst = getattr(old, attr, None), _variable(new, attr)
            if src is not None and dst is not None:
                dst.assign(np.asarray(src))
    return model


def _variable(layer: Any, attr: str) -> Any:
    """The variable holding weight ``attr`` of an HGQ2 layer: HGQ2 0.2's ``QBatchNormalization`` keeps gamma and
    beta as ``bn_gamma`` / ``bn_beta`` (its ``.beta`` is a computed array, its ``.gamma`` raises), so the
    ``bn_`` name comes first; None when the layer has no such variable (e.g. ``center=False``)."""
    for name in (f"bn_{attr}", attr):
        try:
            found = getattr(layer, name, None)
        except AttributeError:
            continue
        if found is not None and hasattr(found, "assign"):
            return found
    return None


class KerasModel(NetworkKind):
    name = "keras"
    Section = KerasSection
    layout = None  # whatever the model file takes
    summary = ("any Keras model file (.keras, Keras 2 .h5, hls4ml's X.json + X_weights.h5; HGQ2, QKeras, HGQ 1 "
               "proxy or float): built as it is, or quantised from a float model")
    section: KerasSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        return check_keras_file(cfg, self.section, "a Keras model file (.keras, .h5, or X.json + X_weights.h5)")

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        return None  # the model's own input shape is checked against the data when it is loaded

    # -- built as it is --------------------------------------------------------------------------------

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
              keep_front: Path | None = None) -> TrainedModel:
        path = model_path(cfg, self.section)
        where = f"{path}"
        source = read_keras_file(path)  # the importer is found from the file's content
        if source.form in ("qkeras", "hgq1_proxy"):
            if self.section.quantize:
                raise ConfigError(f"{where}: a {source.origin}, already quantised; model.quantize: true rebuilds a "
                                  "float model with HGQ2 layers: remove it to build this model as it is")
            if source.form == "hgq1_proxy":
                return import_proxy(self.name, source, data, self.check_layers)
            qkeras = QKerasModel(self.section)  # one QKeras import (with its float edges) for both kinds
            qkeras.check_layers = self.check_layers
            trained = qkeras.train(cfg, data, epochs=epochs, progress=progress)
            trained.kind = self.name
            return trained
        model, _ = build_source(source, where, self.section.trust_code)
        check_io(model, data.input_shape, data.n_classes, where)
        if self.section.quantize:
            self._float_source = model
            # the rebuilt layers are checked against the backend before training, not after it
            rebuilt = self.build(data.input_shape, data.n_classes)
            check_activations(rebuilt, where)
            if self.check_layers is not None:
                self.check_layers(rebuilt, where)
            trained = super().train(cfg, data, epochs=epochs, progress=progress, keep_front=keep_front)
            trained.selection = {"source": "quantised from a float model", "path": str(path), **trained.selection}
            last = model.layers[-1]
            if _is_softmax(last):  # the firmware computes logits: say so, as for every imported model's edges
                trained.selection["float_edges"] = [FloatEdge(
                    where=last.name, edge="output activation",
                    choice="softmax dropped: the firmware gives the logits (argmax unchanged)").as_dict()]
            return trained
        check_quantised(model, where)
        check_activations(model, where)
        if self.check_layers is not None:
            self.check_layers(model, where)
        ebops = None
        if self.section.calibrate:
            from hgq.utils import trace_minmax

            ebops = float(trace_minmax(model, data.x_train, batch_size=8192, verbose=0))
        return loaded_model(self.name, model, path, logits_fn(model), data.n_classes, self.section.calibrate, ebops)

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """The model as built (``model.keras``), and the file(s) it came from as given (``source_model.keras``,
        ``.h5``, or ``source_model.json`` + ``source_model_weights.h5``)."""
        return super().save(trained, model_dir) + copy_sources(trained, model_dir)

    # -- quantize: true --------------------------------------------------------------------------------

    _float_source: Any = None

    def build(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "model") -> keras.Model:
        where = self.section.path
        try:
            return rebuild(self._float_source, quantised=True, scopes=quantizer_scopes(self.section))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None

    def build_float(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "float_model") -> keras.Model:
        return rebuild(self._float_source, quantised=False)

    def _train_float(self, cfg: BuildConfig, data: Dataset, epochs: int) -> tuple[Any, float, int]:
        """The float baseline is the user's trained float model itself (logits), not a retrained twin (0 epochs)."""

        float_model = self.build_float(data.input_shape, data.n_classes)
        return float_model, accuracy(logits_fn(float_model)(data.x_val), data.y_val), 0
