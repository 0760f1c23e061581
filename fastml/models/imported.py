"""What the imported-model kinds (``keras``, ``qkeras``, ``qonnx``) share: model files, shape and layer checks.

An imported model is built "as it is": no training, its arithmetic is the user's. These helpers
turn every way such a model can be unfit for a build into one line naming the file (or the layer,
its class and the backend) before any compilation starts.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from .._internal.keras_backend import ensure_backend
from ..errors import ConfigError
from .base import ModelSection, TrainedModel
from .float_edges import parse_fixed_type

if TYPE_CHECKING:
    from ..recipe import BuildConfig

#: First bytes of a Python pickle (protocol 2+): fastml never unpickles a model file.
_PICKLE_MAGIC = b"\x80"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: Layer classes that carry arbitrary Python code in a saved model.
CODE_LAYERS = ("Lambda",)
#: Layers that only pass data through (no arithmetic, nothing to build).
_PASS_THROUGH = ("InputLayer",)


class ImportedSection(ModelSection):
    """A model file to build as it is (``path`` relative to the recipe), with its float edges made explicit.

    ``input_precision``: the fixed-point type of the input quantiser fastml adds where the model takes a float
    input (``auto``: from the training split's range); ``float_precision``: the same for a float layer inside the
    network; ``keep_softmax``: build a final softmax/sigmoid (with tables) instead of dropping it for an
    argmax / score task. See ``fastml.models.float_edges``.
    """

    path: str = Field(min_length=1)
    input_precision: str = "auto"
    float_precision: str = "auto"
    keep_softmax: bool = False

    @field_validator("input_precision", "float_precision")
    @classmethod
    def _fixed_type_or_auto(cls, value: str, info: ValidationInfo) -> str:
        if value.strip().lower() != "auto":
            parse_fixed_type(value, f"model.{info.field_name}")  # one line naming the key if malformed
        return value


def model_path(cfg: BuildConfig, section: ImportedSection) -> Path:
    """``model.path`` resolved against the recipe's folder."""
    return (cfg.config_dir / section.path).resolve()


def check_model_file(cfg: BuildConfig, section: ImportedSection, suffixes: tuple[str, ...], what: str) -> str | None:
    """Why ``model.path`` is not a usable file (missing, a folder, wrong suffix), or None."""
    try:
        path = model_path(cfg, section)
        exists = path.is_file()
    except (OSError, ValueError):
        return f"key 'model.path': expected a path to {what}, got {section.path!r}"
    if not exists:
        return f"key 'model.path': file {path} does not exist (expected {what}, relative to the YAML)"
    if path.suffix.lower() not in suffixes:
        return f"key 'model.path': {path.name} is not {what} (expected a file ending in {' or '.join(suffixes)})"
    return None


def sniff_not_a_model(path: Path, expected: str) -> str | None:
    """Why ``path`` is obviously not ``expected`` (a pickle, empty, another format), or None."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as err:
        return f"{path}: cannot read the model file ({err.strerror}); expected {expected}"
    if not head:
        return f"{path}: the model file is empty; expected {expected}"
    if head[:1] == _PICKLE_MAGIC:
        return (f"{path}: is a Python pickle, which fastml never loads (unpickling runs arbitrary code); "
                f"expected {expected}")
    return None


def keras_archive_config(path: Path) -> dict[str, Any]:
    """The model config (``config.json``) of a ``.keras`` archive, read without building the model.

    Raises ``ConfigError`` (one line naming the file) for a pickle, an HDF5 file, a truncated or
    corrupt archive, or one without a model config.
    """
    expected = "a Keras 3 model saved with model.save('name.keras')"
    why = sniff_not_a_model(path, expected)
    if why:
        raise ConfigError(why)
    if path.read_bytes()[:8] == _HDF5_MAGIC:
        raise ConfigError(f"{path}: is an HDF5 file (a Keras 2 / QKeras .h5?), not a .keras archive; "
                          "for a QKeras model write model: {kind: qkeras, path: ...}")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not a .keras archive (truncated or corrupt?); expected {expected}")
    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except KeyError:
        raise ConfigError(f"{path}: the archive holds no config.json; expected {expected}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:  # a truncated member, bad JSON
        raise ConfigError(f"{path}: cannot read the archive ({type(err).__name__}: {err}); "
                          f"expected {expected}") from None


def code_layers(config: Any) -> list[tuple[str, str]]:
    """(name, class) of every layer in a Keras config (nested models included) that carries code."""
    found: list[tuple[str, str]] = []
    if isinstance(config, dict):
        if config.get("class_name") in CODE_LAYERS:
            inner = config.get("config") if isinstance(config.get("config"), dict) else {}
            found.append((str(inner.get("name", "?")), str(config["class_name"])))
        for value in config.values():
            found.extend(code_layers(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(code_layers(value))
    return found


def load_keras_file(path: Path, trust_code: bool = False) -> Any:
    """Load a user's ``.keras`` model (HGQ2 layers registered), safely.

    Keras' ``safe_mode`` stays on unless ``trust_code``; a Lambda layer (arbitrary code) is refused
    by name before anything is deserialised. Every failure is a ``ConfigError`` naming the file.
    """
    config = keras_archive_config(path)
    risky = code_layers(config)
    if risky and not trust_code:
        name, cls = risky[0]
        raise ConfigError(f"{path}: layer {name!r} ({cls}) can carry arbitrary Python code, which fastml does not "
                          "load unless the recipe says model.trust_code: true (only for a file you trust)")

    ensure_backend()
    import hgq  # noqa: F401  (registers the HGQ2 layers for loading)
    import keras

    try:
        return keras.models.load_model(path, compile=False, safe_mode=not trust_code)
    except Exception as err:  # Keras raises anything from ValueError to TypeError for a model it cannot rebuild
        why = " ".join(str(err).split()) or type(err).__name__
        if len(why) > 200:  # cut at a word, and say so: never "... deserialized properly ar"
            why = why[:200].rsplit(" ", 1)[0] + " ..."
        raise ConfigError(f"{path}: cannot load this Keras model ({type(err).__name__}: {why}); expected a Keras 3 "
                          "model whose layers are Keras or HGQ2 layers") from None


def check_io(model: Any, input_shape: tuple[int, ...], n_classes: int, where: str) -> None:
    """One-line ``ConfigError`` if ``model`` has several inputs/outputs or shapes that do not fit the data."""
    inputs, outputs = list(model.inputs), list(model.outputs)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConfigError(f"{where}: the model has {len(inputs)} inputs and {len(outputs)} outputs; "
                          "expected one input (the event) and one output (the class scores)")
    check_input_shape(tuple(inputs[0].shape[1:]), input_shape, where)
    check_outputs(tuple(outputs[0].shape[1:]), n_classes, where)


def check_input_shape(model_in: tuple[Any, ...], data_in: tuple[int, ...], where: str) -> None:
    """One-line ``ConfigError`` naming both shapes unless one event of the data has exactly the model's input shape.

    The model's shape decides: the data is never reshaped or transposed behind the user's back (a (28, 28, 1)
    image fed to a (1, 28, 28) input would be the same values, a (32, 32, 3) one a silently scrambled image). When
    the values per event are as many as the model takes, the line says which numpy call writes the file right.
    """
    model_in, data_in = tuple(model_in), tuple(int(d) for d in data_in)
    if model_in == data_in:
        return
    hint = ""
    if all(isinstance(d, int) for d in model_in) and int(np.prod(model_in)) == int(np.prod(data_in)):
        target = "(events, " + ", ".join(str(d) for d in model_in) + ")"
        if sorted(model_in) == sorted(data_in) and len(model_in) > 1 and _squeezed(model_in) != _squeezed(data_in):
            hint = f"; the same axes in another order (channels first vs last?): np.transpose x to {target}"
        else:
            hint = f"; the same {int(np.prod(data_in))} values per event: np.reshape x to {target} in the file"
    raise ConfigError(f"{where}: the model takes inputs of shape {_shape(model_in)} per event, the data has "
                      f"{_shape(data_in)}; expected the same shape{hint}")


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def check_outputs(model_out: tuple[Any, ...], n_classes: int, where: str) -> None:
    """One-line ``ConfigError`` unless the model gives one score per class (or one for two classes)."""
    fits = len(model_out) == 1 and (model_out[0] == n_classes or (n_classes == 2 and model_out[0] == 1))
    if not fits:
        raise ConfigError(f"{where}: the model gives outputs of shape {_shape(model_out)} per event, the data has "
                          f"{n_classes} classes; expected ({n_classes},)" + (" or (1,)" if n_classes == 2 else ""))


def _shape(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def operations(model: Any) -> list[Any]:
    """Every layer/operation of ``model`` in graph order, nested models flattened, inputs left out."""
    import keras

    found: list[Any] = []
    for op in getattr(model, "operations", model.layers):
        if isinstance(op, keras.Model):
            found.extend(operations(op))
        elif type(op).__name__ not in _PASS_THROUGH:
            found.append(op)
    return found


def check_quantised(model: Any, where: str) -> None:
    """One-line ``ConfigError`` if a layer with weights is a float (non-HGQ2) layer: no bit-exact firmware."""
    for op in operations(model):
        if getattr(op, "weights", None) and not type(op).__module__.startswith("hgq."):
            raise ConfigError(f"{where}: layer {op.name!r} ({type(op).__name__}) is a float layer without HGQ2 "
                              "quantisers, so no firmware can reproduce it exactly; expected an HGQ2 model, or "
                              "model.quantize: true to rebuild it with HGQ2 layers and train it")


#: Activations firmware computes exactly (others, e.g. tanh or sigmoid, are float functions: tables in firmware).
EXACT_ACTIVATIONS = ("linear", "relu")


def check_activations(model: Any, where: str) -> None:
    """One-line ``ConfigError`` for a float activation function (tanh, sigmoid...) in a layer: Keras evaluates it
    in floating point, the firmware with a lookup table, so the outputs could not match bit for bit."""
    for op in operations(model):
        act = getattr(op, "activation", None)
        name = getattr(act, "__name__", None)
        if act is not None and name not in EXACT_ACTIVATIONS and type(op).__name__ != "QUnaryFunctionLUT":
            raise ConfigError(f"{where}: layer {op.name!r} ({type(op).__name__}) applies activation {name!r} in "
                              "floating point, which no firmware reproduces exactly; expected linear or relu, or "
                              "an HGQ2 QUnaryFunctionLUT (a quantised table) for other functions")


def loaded_model(kind: str, model: Any, source: Path, predict: Any, n_classes: int, calibrated: bool,
                 ebops: float | None = None, extra: dict[str, Any] | None = None) -> TrainedModel:
    """A ``TrainedModel`` for a model built as it is (``selection`` says so, and where it came from)."""
    selection = {"train": f"skipped (model loaded from {source})", "source": "loaded", "path": str(source),
                 "calibrated": calibrated, **(extra or {})}
    return TrainedModel(kind=kind, model=model, predict_quantized=predict, predict_float=None, n_classes=n_classes,
                        ebops=ebops, selection=selection, family="network")


def as_float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


__all__ = ["ImportedSection", "check_activations", "check_input_shape", "check_io", "check_model_file",
           "check_quantised", "load_keras_file", "loaded_model", "model_path"]
