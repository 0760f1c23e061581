"""Which importer a Keras model file needs, found from its content: read with ``zipfile`` / ``json`` / ``h5py``,
never TensorFlow, and never Keras to find out what the file is.

=====================================================  ==============================  ==============================
file (``model.path``)                                    layers found in it              importer
=====================================================  ==============================  ==============================
``.keras`` archive (Keras 3)                             HGQ2 or plain Keras             Keras (``load_keras_file``)
``.keras`` archive (Keras 3)                             QKeras v3 (``qkeras.*``)        normalised, ``rebuild_hgq``
``.h5`` / ``.hdf5`` with ``model_config`` (Keras 2)      QKeras                          ``rebuild_hgq``
``.h5`` / ``.hdf5`` with ``model_config`` (Keras 2)      HGQ 1 proxy                     ``hgq1_proxy.rebuild_proxy``
``.h5`` / ``.hdf5`` with ``model_config`` (Keras 2)      plain float Keras               ``keras2_float_model``
``X.json`` + ``X_weights.h5`` (hls4ml's convention)      any of the three above          as for the ``.h5``
=====================================================  ==============================  ==============================

The normal form of a file for the QKeras and HGQ 1 importers is what ``qkeras_model.read_h5`` returns for a
Keras 2 ``.h5``: (Keras 2 model config dict, {layer name: ``LayerWeights``}). A QKeras v3 archive is brought to
it: Keras 3 ``inbound_nodes`` become Keras 2's ``[[[source, 0, 0, {}]]]``, shared serialised objects are
resolved, the weights come from the archive's ``model.weights.h5`` (named ``layer/kernel:0`` as Keras 2 names
them), and its quantisers stay ``{"class_name", "config"}`` dicts, which ``parse_quantizer`` reads.

``path:`` may name either file of a ``X.json`` + ``X_weights.h5`` pair; the other is found by that naming, and
a missing partner is one line naming the file looked for.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._internal.keras_backend import ensure_backend
from ..errors import ConfigError
from .hgq1_proxy import PROXY_CLASSES, chain_and_input, layer_name, rebuild_proxy
from .imported import (
    ImportedSection,
    check_io,
    check_model_file,
    keras_archive_config,
    load_keras_file,
    loaded_model,
    model_path,
    sniff_not_a_model,
)
from .network import logits_fn
from .qkeras_model import LayerWeights, h5_layer_weights, read_h5, rebuild_hgq

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig
    from .base import TrainedModel

SUFFIXES = (".keras", ".h5", ".hdf5", ".json")
EXPECTED = ("a Keras model file: a Keras 3 .keras archive, a Keras 2 .h5 saved with model.save(), or hls4ml's "
            "X.json + X_weights.h5 pair")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

Form = Literal["keras3", "qkeras", "hgq1_proxy", "keras2_float"]

#: HGQ 1's training layers: a model saved before ``to_proxy_model`` (the proxy is what says the firmware's types).
_HGQ1_TRAINING = re.compile(r"^(HQuantize|HDense|HConv[12]D|HActivation|HAdd|HDenseBatchNorm|HConv[12]DBatchNorm|"
                            r"P(Reshape|Flatten|Concatenate|MaxPool\w*|AvgPool\w*|Dropout|Permute))$")
#: QKeras layer classes (QDense, QActivation, QConv2DBatchnorm, ...): ``Q`` then a capital.
_QKERAS_CLASS = re.compile(r"^Q[A-Z]")
#: QKeras layers ``rebuild_hgq`` imports; any other QKeras layer is refused here naming its origin.
_QKERAS_IMPORTED = ("QDense", "QConv1D", "QConv2D", "QActivation", "QDenseBatchnorm", "QConv2DBatchnorm",
                    "QBatchNormalization")
#: Top-level packages whose layers a Keras 3 archive may hold (anything else is a custom layer).
_KNOWN_PACKAGES = ("keras", "hgq", "qkeras")


@dataclass(frozen=True)
class KerasSource:
    """A Keras model file as fastml found it: ``form`` picks the importer; ``origin`` names the file's kind in
    messages; ``config`` / ``weights`` are the normal form (None for a Keras 3 archive Keras loads itself)."""

    path: Path
    form: Form
    origin: str
    config: dict[str, Any] | None = None
    weights: dict[str, list[np.ndarray]] | None = None
    files: tuple[Path, ...] = field(default_factory=tuple)


# ------------------------------------------------------------------------------------------ hls4ml's pair


def partner_candidates(path: Path) -> list[Path]:
    """The other file of hls4ml's ``X.json`` + ``X_weights.h5`` pair, in the order looked for."""
    if path.suffix.lower() == ".json":
        return [path.with_name(path.stem + "_weights" + s) for s in (".h5", ".hdf5")]
    stem = path.stem[: -len("_weights")] if path.stem.endswith("_weights") else path.stem
    return [path.with_name(stem + ".json")]


def _partner(path: Path) -> Path | None:
    return next((p for p in partner_candidates(path) if p.is_file()), None)


def _missing_partner(path: Path, subject: str | None = None) -> str:
    """One line: ``path`` is half of hls4ml's pair and its partner is not beside it (``subject``: how the line
    starts; the path by default)."""
    looked = partner_candidates(path)[0]
    start = subject if subject is not None else f"{path}:"
    if path.suffix.lower() == ".json":
        return (f"{start} a model config without weights; looked for its weights file {looked.name} beside "
                f"{path.name} (hls4ml's X.json + X_weights.h5 naming) and found none")
    return (f"{start} an HDF5 file with weights only (no model config); looked for its model config {looked.name} "
            f"beside {path.name} (hls4ml's X.json + X_weights.h5 naming) and found none")


def _hdf5_has_config(path: Path) -> bool | None:
    """Whether an HDF5 file holds a Keras model config; None if h5py cannot read it."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except (OSError, ValueError):
        return None


def check_keras_file(cfg: BuildConfig, section: ImportedSection, what: str) -> str | None:
    """Why ``model.path`` is not a usable Keras model file, found without reading the model (``validate``)."""
    why = check_model_file(cfg, section, SUFFIXES, what)
    if why:
        return why
    path = model_path(cfg, section)
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError:
        return None  # said in one line when the file is read
    weights_only = path.suffix.lower() != ".json" and head == _HDF5_MAGIC and _is_weights_only(path)
    if (path.suffix.lower() == ".json" or weights_only) and _partner(path) is None:
        return _missing_partner(path, f"key 'model.path': {path.name} is")
    return None


# ------------------------------------------------------------------------------------------ reading


def read_keras_file(path: Path) -> KerasSource:
    """The importer ``path`` needs and, for the QKeras / HGQ 1 / float Keras 2 importers, its normal form.

    Raises a one-line ``ConfigError`` naming the file for anything else (a pickle, a corrupt file, a weights
    file without its partner).
    """
    why = sniff_not_a_model(path, EXPECTED)
    if why:
        raise ConfigError(why)
    with path.open("rb") as f:
        head = f.read(64)
    if head[:8] == _HDF5_MAGIC:
        return _read_hdf5(path)
    if zipfile.is_zipfile(path):
        return _read_archive(path)
    if head.lstrip()[:1] == b"{":
        partner = _partner(path)
        if partner is None:
            raise ConfigError(_missing_partner(path) + f"; expected {EXPECTED}")
        return _from_config(path, _read_json(path), _read_weights(partner, None), (path, partner), "json + weights")
    raise ConfigError(f"{path}: not a .keras archive, an HDF5 file or a JSON model config (truncated or corrupt?); "
                      f"expected {EXPECTED}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read this JSON model config ({type(err).__name__}); truncated or "
                          f"corrupt? expected {EXPECTED}") from None
    if not isinstance(config, dict) or not isinstance(config.get("config"), (dict, list)):
        raise ConfigError(f"{path}: the JSON is not a Keras model config (no 'config'); expected {EXPECTED}")
    return config


def _read_hdf5(path: Path) -> KerasSource:
    has_config = _hdf5_has_config(path)
    if has_config is None:
        raise ConfigError(f"{path}: cannot read this HDF5 model file (truncated or corrupt?); expected {EXPECTED}")
    if has_config:
        config, weights = read_h5(path)
        return _from_config(path, config, weights, (path,), ".h5")
    partner = _partner(path)
    if partner is None:
        raise ConfigError(_missing_partner(path) + f"; expected {EXPECTED}")
    config = _read_json(partner)
    return _from_config(path, config, _read_weights(path, config), (partner, path), "json + weights")


def _read_weights(path: Path, config: dict[str, Any] | None) -> dict[str, list[np.ndarray]]:
    """{layer: weights} of a weights file: Keras 2 (``save_weights``: a group per layer with ``weight_names``) or
    Keras 3 (``.weights.h5``: ``layers/<name>/vars/<i>``, mapped to layer names with ``config``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layers" in f and config is not None and _is_keras3(config):
                return _keras3_weights(f, _layer_list(config))
            return h5_layer_weights(f)
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read this HDF5 weights file ({type(err).__name__}); truncated or "
                          f"corrupt? expected {EXPECTED}") from None


def _read_archive(path: Path) -> KerasSource:
    config = keras_archive_config(path)
    layers = _layer_list(config)
    qkeras = [layer for layer in layers if _module(layer).startswith("qkeras")
              or str(layer.get("registered_name") or "").startswith("qkeras>")]
    if not qkeras:
        for layer in layers:  # a custom layer: named before Keras says "could not be deserialized"
            package = _module(layer).split(".")[0]
            if package and package not in _KNOWN_PACKAGES:
                raise ConfigError(f"{path}: layer {layer_name(layer)!r} ({_qualified(layer)}) is a custom layer from "
                                  f"package {package!r}, which fastml does not load; expected Keras, HGQ2 or QKeras "
                                  "layers")
        return KerasSource(path, "keras3", "Keras 3 .keras archive", files=(path,))
    import h5py

    try:
        with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            weights = _keras3_weights(f, layers)
    except KeyError:
        raise ConfigError(f"{path}: the archive holds no model.weights.h5; expected {EXPECTED}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ConfigError(f"{path}: cannot read the archive's weights ({type(err).__name__}); truncated or "
                          f"corrupt? expected {EXPECTED}") from None
    return _from_config(path, config, weights, (path,), ".keras archive")


# ------------------------------------------------------------------------------------------ normal form


def _module(layer: dict[str, Any]) -> str:
    return str(layer.get("module") or "")


def _qualified(layer: dict[str, Any]) -> str:
    module = _module(layer)
    return f"{module}.{layer.get('class_name')}" if module else str(layer.get("class_name"))


def _is_keras3(config: dict[str, Any]) -> bool:
    """Keras 3 configs name each layer's module; Keras 2 configs never do."""
    return any("module" in layer for layer in _layer_list(config))


def _layer_list(config: dict[str, Any]) -> list[dict[str, Any]]:
    inner = config.get("config")
    if isinstance(inner, list):  # Keras <= 2.1 Sequential: the layers themselves
        return [layer for layer in inner if isinstance(layer, dict)]
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return [layer for layer in layers or [] if isinstance(layer, dict)]


def _resolve_shared(value: Any, seen: dict[Any, Any]) -> Any:
    """A Keras 3 config with every shared object in full (a later reference may hold only its id)."""
    if isinstance(value, dict):
        sid = value.get("shared_object_id")
        if sid is not None and "config" not in value and sid in seen:
            return seen[sid]
        out = {k: _resolve_shared(v, seen) for k, v in value.items()}
        if sid is not None and "config" in value:
            seen[sid] = out
        return out
    if isinstance(value, list):
        return [_resolve_shared(v, seen) for v in value]
    return value


def _keras3_sources(node: Any) -> list[str]:
    """Layer names a Keras 3 inbound node reads (``keras_history`` of each ``__keras_tensor__``)."""
    found: list[str] = []
    if isinstance(node, dict):
        history = node.get("config", {}).get("keras_history") if node.get("class_name") == "__keras_tensor__" else None
        if isinstance(history, list) and history:
            return [str(history[0])]
        for value in node.values():
            found.extend(_keras3_sources(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_keras3_sources(value))
    return found


def normalise_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Keras 2 or Keras 3 model config in the Keras 2 form ``rebuild_hgq`` reads: ``{"class_name", "config":
    {"name", "layers"}}``, layers starting with an ``InputLayer``, Keras 2 ``inbound_nodes`` in functional models.
    Each layer keeps its ``module`` (Keras 3) for messages."""
    keras3 = _is_keras3(config)
    layers = _resolve_shared(_layer_list(config), {}) if keras3 else _layer_list(config)
    inner = config.get("config") if isinstance(config.get("config"), dict) else {}
    if not keras3 and inner and layers and layers[0].get("class_name") == "InputLayer":
        return config  # already the form read_h5 gives (Keras >= 2.2): imported exactly as before
    sequential = config.get("class_name") == "Sequential"
    out: list[dict[str, Any]] = []
    for layer in layers:
        c = dict(layer.get("config") or {})
        c.setdefault("name", layer.get("name", "?"))
        entry = {"class_name": layer.get("class_name"), "config": c, "name": c["name"]}
        if layer.get("module"):
            entry["module"] = layer["module"]
        if not sequential:
            if keras3:
                sources = _keras3_sources(layer.get("inbound_nodes") or [])
                entry["inbound_nodes"] = [[[s, 0, 0, {}] for s in sources]] if sources else []
            else:
                entry["inbound_nodes"] = layer.get("inbound_nodes") or []
        out.append(entry)
    if out and out[0].get("class_name") != "InputLayer":
        first = out[0]["config"]
        shape = first.get("batch_input_shape") or first.get("batch_shape") or (
            (config.get("build_input_shape") or inner.get("build_input_shape")) if isinstance(inner, dict) else None)
        if shape:
            out.insert(0, {"class_name": "InputLayer", "name": "input",
                           "config": {"batch_input_shape": list(shape), "name": "input"}})
    return {"class_name": "Sequential" if sequential else "Functional",
            "config": {"name": inner.get("name", "model") if isinstance(inner, dict) else "model", "layers": out}}


def _snake(name: str) -> str:
    """Keras 3's name for a layer's weights group (``QDense`` -> ``q_dense``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _var_names(layer: dict[str, Any], n: int) -> list[str]:
    """Keras 3 stores a layer's variables unnamed, in the order the layer creates them."""
    cls, c = str(layer.get("class_name")), layer.get("config") or {}
    if cls in ("QBatchNormalization", "BatchNormalization"):
        names = (["gamma"] if c.get("scale", True) else []) + (["beta"] if c.get("center", True) else []) + [
            "moving_mean", "moving_variance"]
    elif cls in ("QDense", "QConv1D", "QConv2D", "Dense", "Conv1D", "Conv2D"):
        names = ["kernel", "bias"]
    else:
        names = []
    return names[:n] if len(names) >= n else [str(i) for i in range(n)]


def _keras3_weights(f: Any, layers: list[dict[str, Any]]) -> dict[str, list[np.ndarray]]:
    """{layer name: LayerWeights} of a Keras 3 weights file (``layers/<group>/vars/<i>``). A group's ``vars``
    carries the layer's name in recent Keras; otherwise groups follow the layers' class names in order
    (``q_dense``, ``q_dense_1``, ...), as Keras names them."""
    by_group: dict[str, dict[str, Any]] = {}
    count: dict[str, int] = {}
    for layer in layers:
        snake = _snake(str(layer.get("class_name")))
        n = count.get(snake, 0)
        count[snake] = n + 1
        by_group[snake if n == 0 else f"{snake}_{n}"] = layer
    by_name = {layer_name(layer): layer for layer in layers}
    weights: dict[str, list[np.ndarray]] = {}
    root = f["layers"] if "layers" in f else {}
    for group in root:
        variables = root[group].get("vars")
        if variables is None:
            continue
        named = variables.attrs.get("name")
        named = named.decode() if isinstance(named, bytes) else named
        layer = by_name.get(str(named)) if named is not None else by_group.get(group)
        if layer is None:
            layer = by_group.get(group)
        if layer is None:
            continue
        arrays = [np.asarray(variables[k]) for k in sorted(variables, key=int)]
        name = layer_name(layer)
        weights[name] = LayerWeights(arrays, [f"{name}/{v}:0" for v in _var_names(layer, len(arrays))])
    return weights


def _from_config(path: Path, config: dict[str, Any], weights: dict[str, list[np.ndarray]],
                 files: tuple[Path, ...], container: str) -> KerasSource:
    """Classify a model config by its layers: HGQ 1 proxy, QKeras, or plain float Keras."""
    keras3 = _is_keras3(config)
    normal = normalise_config(config)
    layers = normal["config"]["layers"]
    if not layers:
        raise ConfigError(f"{path}: the model config lists no layers; expected {EXPECTED}")
    classes = [str(layer.get("class_name")) for layer in layers]
    version = "Keras 3" if keras3 else "Keras 2"
    if any(c in PROXY_CLASSES for c in classes):
        return KerasSource(path, "hgq1_proxy", f"HGQ 1 proxy model ({version} {container})", normal, weights, files)
    for layer in layers:
        if _HGQ1_TRAINING.match(str(layer.get("class_name"))):
            raise ConfigError(f"{path}: layer {layer_name(layer)!r} ({layer.get('class_name')}) is an HGQ 1 training "
                              "layer; fastml imports HGQ 1 models as the proxy model HGQ writes for firmware "
                              "(HGQ.proxy.to_proxy_model(model) saved with model.save('name.h5'))")
    # Keras 3 names each layer's module (HGQ2's QDense is not QKeras's); Keras 2 only the class
    qkeras = any(_module(layer).startswith("qkeras") if keras3 else bool(_QKERAS_CLASS.match(c))
                 for c, layer in zip(classes, layers, strict=True))
    if qkeras:
        origin = f"QKeras v3 model ({version} {container})" if keras3 else f"QKeras model ({version} {container})"
        _check_qkeras_layers(path, layers, keras3)
        return KerasSource(path, "qkeras", origin, normal, weights, files)
    if keras3:
        raise ConfigError(f"{path}: a Keras 3 model config outside a .keras archive; save the model with "
                          "model.save('name.keras') and give that file")
    return KerasSource(path, "keras2_float", f"float Keras 2 model ({container})", normal, weights, files)


def _check_qkeras_layers(path: Path, layers: list[dict[str, Any]], keras3: bool) -> None:
    """One line for a QKeras layer ``rebuild_hgq`` does not import, or a custom layer, naming its origin."""
    for layer in layers:
        cls, module = str(layer.get("class_name")), _module(layer)
        is_qkeras = module.startswith("qkeras") if keras3 else bool(_QKERAS_CLASS.match(cls))
        where = f"{path}: {'QKeras v3' if keras3 else 'QKeras'} layer" if is_qkeras else f"{path}: layer"
        if is_qkeras and cls not in _QKERAS_IMPORTED:
            raise ConfigError(f"{where} {layer_name(layer)!r} ({_qualified(layer)}) is not a layer fastml imports "
                              f"(expected {', '.join(_QKERAS_IMPORTED)}, or Flatten, Reshape, Dropout, MaxPooling, "
                              "ReLU)")
        if keras3 and is_qkeras and cls in ("QDenseBatchnorm", "QConv2DBatchnorm"):
            raise ConfigError(f"{where} {layer_name(layer)!r} ({_qualified(layer)}): a .keras archive stores its "
                              "kernel and batch-norm weights unnamed, in an order fastml does not assume; save the "
                              "model as a Keras 2 .h5, or fold the batch norm before saving")
        package = module.split(".")[0]
        if package and package not in _KNOWN_PACKAGES:
            raise ConfigError(f"{where} {layer_name(layer)!r} ({_qualified(layer)}) is a custom layer from package "
                              f"{package!r}, which fastml does not import")


# ------------------------------------------------------------------------------------------ float Keras 2


#: Plain Keras 2 layers fastml rebuilds in Keras 3, and the config keys that define their arithmetic.
_FLOAT_LAYERS: dict[str, tuple[str, ...]] = {
    "Dense": ("units", "activation", "use_bias"),
    "Conv1D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias", "groups"),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias", "groups"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "Activation": ("activation",),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Softmax": ("axis",),
    "Dropout": ("rate",),
    "Flatten": (),
    "Reshape": ("target_shape",),
    "MaxPooling1D": ("pool_size", "strides", "padding"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling1D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "GlobalAveragePooling1D": (),
    "GlobalAveragePooling2D": (),
}


def keras2_float_model(config: dict[str, Any], weights: dict[str, list[np.ndarray]], where: str) -> Any:
    """The Keras 3 float model a normalised Keras 2 config and its weights describe (same layers, names and
    float32 weights); ``ConfigError`` naming a layer it does not rebuild."""
    ensure_backend()
    import keras

    chain, inputs = chain_and_input(config, where, "float Keras 2 models", EXPECTED)
    x: Any = inputs
    built: list[tuple[Any, dict[str, Any]]] = []
    for layer in chain[1:]:
        cls, c, name = str(layer.get("class_name")), layer.get("config") or {}, layer_name(layer)
        if cls not in _FLOAT_LAYERS:
            raise ConfigError(f"{where}: Keras 2 layer {name!r} ({cls}) is not a layer fastml rebuilds from a float "
                              f"Keras 2 model (expected {', '.join(_FLOAT_LAYERS)})")
        kwargs = {k: c[k] for k in _FLOAT_LAYERS[cls] if k in c and c[k] is not None}
        if cls == "BatchNormalization" and isinstance(kwargs.get("axis"), list):
            if len(kwargs["axis"]) != 1:
                raise ConfigError(f"{where}: Keras 2 layer {name!r} ({cls}) normalises over axes {kwargs['axis']}; "
                                  "fastml rebuilds a batch norm over one (channel) axis")
            kwargs["axis"] = kwargs["axis"][0]
        if c.get("data_format", "channels_last") != "channels_last":
            raise ConfigError(f"{where}: Keras 2 layer {name!r} ({cls}) is channels_first; fastml rebuilds "
                              "channels_last layers")
        if cls == "Reshape":
            kwargs["target_shape"] = tuple(kwargs.get("target_shape", ()))
        try:
            new = getattr(keras.layers, cls)(name=name, **kwargs)
            x = new(x)
        except (ValueError, TypeError) as err:  # e.g. an activation Keras 3 does not know
            why = " ".join(str(err).split()).split(". ")[0]
            raise ConfigError(f"{where}: Keras 2 layer {name!r} ({cls}) cannot be rebuilt in Keras 3 ({why})") from None
        built.append((new, layer))
    model = keras.Model(inputs, x, name=str(config["config"].get("name", "model")))
    for new, layer in built:
        if not new.weights:
            continue
        name = layer_name(layer)
        w = weights.get(name)
        wanted = [v.name.split("/")[-1].split(":")[0] for v in new.weights]
        named = getattr(w, "named", None)
        arrays = [named(v) for v in wanted] if named else []
        if w is None or any(a is None for a in arrays):
            raise ConfigError(f"{where}: Keras 2 layer {name!r} ({layer.get('class_name')}): the weights file lacks "
                              f"its {', '.join(wanted)}; truncated or foreign file?")
        for v, a in zip(new.weights, arrays, strict=True):
            if tuple(v.shape) != tuple(a.shape):
                raise ConfigError(f"{where}: Keras 2 layer {name!r}: weight {v.name} has shape {tuple(a.shape)} in "
                                  f"the file, the layer expects {tuple(v.shape)}")
            v.assign(np.asarray(a, np.float32))
    return model


# ------------------------------------------------------------------------------------------ building


def build_source(source: KerasSource, where: str, trust_code: bool = False) -> tuple[Any, list[str]]:
    """The Keras model ``source`` holds, and a log of what each layer became (empty for a Keras 3 archive)."""
    if source.form == "keras3":
        return load_keras_file(source.path, trust_code), []
    assert source.config is not None and source.weights is not None  # every other form is read to its normal form
    if source.form == "qkeras":
        return rebuild_hgq(source.config, source.weights, where)
    if source.form == "hgq1_proxy":
        return rebuild_proxy(source.config, source.weights, where)
    return keras2_float_model(source.config, source.weights, where), [f"rebuilt in Keras 3 from the {source.origin}"]


# ------------------------------------------------------------------------------------------ for the kinds


def import_proxy(kind: str, source: KerasSource, data: Dataset, check_layers: Any) -> TrainedModel:
    """An HGQ 1 proxy file built as it is: its quantisers say exactly what the firmware computes."""
    where = str(source.path)
    model, notes = build_source(source, where)
    check_io(model, data.input_shape, data.n_classes, where)
    if check_layers is not None:
        check_layers(model, where)
    return loaded_model(kind, model, source.path, logits_fn(model), data.n_classes, calibrated=False,
                        extra={"imported_from": f"{source.origin} (read with h5py; TensorFlow not used)",
                               "layers": notes})


def copy_sources(trained: TrainedModel, model_dir: Path) -> list[Path]:
    """The model file(s) as given, into the project: ``source_model<suffix>``, and for hls4ml's pair
    ``source_model.json`` + ``source_model_weights.h5``."""
    import shutil

    given = Path(trained.selection.get("path", ""))
    if not given.is_file():
        return []
    files = [given]
    partner = _partner(given) if given.suffix.lower() == ".json" or _is_weights_only(given) else None
    if partner is not None:
        files = sorted([given, partner], key=lambda p: p.suffix.lower() != ".json")
    written: list[Path] = []
    for i, file in enumerate(files):
        suffix = file.suffix.lower()
        target = model_dir / (f"source_model_weights{suffix}" if len(files) == 2 and i == 1 else
                              f"source_model{suffix}")
        if file.resolve() != target.resolve():
            shutil.copyfile(file, target)
            written.append(target)
    return written


def _is_weights_only(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(8) == _HDF5_MAGIC and _hdf5_has_config(path) is False
    except OSError:
        return False
