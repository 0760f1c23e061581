"""``kind: qkeras`` — a QKeras model file (Keras 2 ``.h5``) rebuilt as an equal HGQ2 model, without TensorFlow.

The ``.h5`` holds the model's config (JSON) and weights; fastml reads both with h5py and rebuilds the
network from HGQ2 layers with fixed (non-trainable) quantisers that compute what QKeras computes:

- ``quantized_bits(bits, integer, keep_negative, symmetric, alpha=1)``: QKeras computes
  ``clip(round(x * 2^f), lo, hi) / 2^f`` with ``tf.round`` (round half to even) and ``f = bits -
  keep_negative - integer`` -> HGQ2 fixed point ``k=keep_negative, i=integer, f`` with ``RND_CONV``
  rounding and ``SAT`` (``SAT_SYM`` when symmetric) overflow.
- ``quantized_relu(bits, integer)``: ``clip(round(x * 2^f), 0, 2^bits - 1) / 2^f``, ``f = bits - integer``
  -> unsigned ``k=0, i=integer, f``, ``RND_CONV``, ``SAT`` (a negative input rounds/saturates to 0, as ReLU).
- ``QDense`` / ``QConv1D`` / ``QConv2D``: weights quantised here exactly as QKeras does at inference, kept
  in HGQ2 layers whose weight quantisers hold those values exactly; no input quantiser (the preceding
  ``QActivation`` is one). QKeras sums in float32: the import checks that every sum is exact there
  (fewer than 24 significant bits), so HGQ2 (also float32) and the firmware (exact fixed point) agree.
- ``QActivation`` -> an HGQ2 ``Quantizer`` layer; ``Flatten``, ``Reshape``, ``Dropout``, ``MaxPooling``,
  ``ReLU`` pass through.

Refused with one line naming the layer and the quantiser (never approximated): ``alpha`` other than 1
(``"auto"``, ``"auto_po2"``, or no alpha on a kernel quantiser, which QKeras turns into ``auto_po2``),
stochastic rounding, ``qnoise_factor`` below 1, po2/binary/ternary quantisers, a ``QBatchNormalization``
(QKeras computes it in floating point), float layers with weights, a float (unquantised) model input,
float activations other than ReLU (e.g. a final softmax), branching graphs.

Backend: hls4ml only. QKeras rounds half to even; da4ml 0.5 (the rtl backend) rounds only by truncation
or half up, so its RTL could not reproduce QKeras on ties.
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError
from .base import ModelKind, TrainedModel
from .imported import (
    ImportedSection,
    check_backend_support,
    check_io,
    check_model_file,
    loaded_model,
    model_path,
    sniff_not_a_model,
)
from .network import logits_fn

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..data import Dataset

#: float32 carries 24 significant bits; an exact sum must stay below this many (one spare for the sign).
_FLOAT32_EXACT_BITS = 23
_EXPECTED = "a QKeras model saved by Keras 2 with model.save('name.h5')"


class QKerasSection(ImportedSection):
    """A QKeras ``.h5`` model file (relative to the recipe), imported without TensorFlow."""

    kind: Literal["qkeras"] = "qkeras"


@dataclass(frozen=True)
class FixedQ:
    """A QKeras quantiser as fixed point: sign bit ``k``, integer bits ``i`` (without sign), fraction bits ``f``."""

    k: int
    i: int
    f: int
    overflow: str  # SAT | SAT_SYM

    @property
    def step(self) -> float:
        return 2.0 ** -self.f

    @property
    def bound(self) -> float:
        """Largest magnitude the quantiser outputs."""
        return 2.0 ** self.i

    def hgq_config(self, place: str) -> Any:
        from hgq.quantizer.config import QuantizerConfig

        return QuantizerConfig("kif", place, k0=self.k, i0=self.i, f0=self.f, round_mode="RND_CONV",
                               overflow_mode=self.overflow, ic=None, fc=None, ir=None, fr=None, trainable=False,
                               # weights: one format for the whole tensor; data: per element (batch axis shared)
                               homogeneous_axis=() if place != "datalane" else (0,), heterogeneous_axis=None)

    def qkeras_quantize(self, x: np.ndarray) -> np.ndarray:
        """What QKeras computes at inference, in float32 (``x + stop_gradient(-x + xq)`` included)."""
        x = np.asarray(x, np.float32)
        m = np.float32(2.0 ** self.f)
        if self.k:
            lo = -(2.0 ** (self.i + self.f)) + (1 if self.overflow == "SAT_SYM" else 0)
        else:
            lo = 0.0
        hi = 2.0 ** (self.i + self.f) - 1
        xq = (np.clip(np.round(x * m), lo, hi) / m).astype(np.float32)  # np.round: half to even, as tf.round
        return (x + (-x + xq)).astype(np.float32)


def _refuse(where: str, layer: str, what: str, why: str) -> ConfigError:
    return ConfigError(f"{where}: layer {layer!r}: {what} {why}")


def _quantizer_spec(spec: Any) -> tuple[str, dict[str, Any]]:
    """(class name, config) of a serialised QKeras quantiser: a {"class_name", "config"} dict or a string
    such as ``"quantized_relu(6, 2)"`` (parsed as literals only, never evaluated)."""
    if isinstance(spec, dict) and "class_name" in spec:
        return str(spec["class_name"]), dict(spec.get("config") or {})
    if isinstance(spec, str):
        try:
            call = ast.parse(spec.strip(), mode="eval").body
        except SyntaxError:
            return spec, {}
        if isinstance(call, ast.Name):
            return call.id, {}
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            try:
                args = [ast.literal_eval(a) for a in call.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
            except ValueError:
                return spec, {}
            names = {"quantized_bits": ("bits", "integer", "symmetric", "keep_negative", "alpha"),
                     "quantized_relu": ("bits", "integer", "use_sigmoid", "negative_slope")}.get(call.func.id, ())
            return call.func.id, {**dict(zip(names, args, strict=False)), **kwargs}
    return repr(spec)[:60], {}


def parse_quantizer(spec: Any, where: str, layer: str, role: str) -> FixedQ:
    """The ``FixedQ`` of a serialised QKeras quantiser, or a one-line ``ConfigError`` saying why not."""
    name, c = _quantizer_spec(spec)
    shown = f"{role} {name}({', '.join(f'{k}={v!r}' for k, v in c.items() if k in ('bits', 'integer', 'alpha'))})"
    if c.get("use_stochastic_rounding"):
        raise _refuse(where, layer, shown, "uses stochastic rounding, which no firmware reproduces")
    if float(c.get("qnoise_factor", 1.0)) != 1.0:
        raise _refuse(where, layer, shown, "has qnoise_factor < 1 (part float); expected a fully quantised model")
    if name == "quantized_bits":
        bits, integer = int(c.get("bits", 8)), int(c.get("integer", 0))
        keep_negative = int(bool(c.get("keep_negative", True)))
        alpha = c.get("alpha")
        if alpha is None and role in ("kernel_quantizer",):
            raise _refuse(where, layer, shown, "has no alpha, which QKeras turns into alpha='auto_po2' (a scale "
                          "fitted to the weights); expected alpha=1")
        if alpha is not None and not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                                      and float(alpha) == 1.0):
            raise _refuse(where, layer, shown, f"has alpha={alpha!r} (a scale QKeras fits to the data); fastml "
                          "imports only alpha=1")
        if bits - keep_negative <= 0:
            raise _refuse(where, layer, shown, "is a binary quantiser; fastml imports fixed-point quantisers only")
        f = bits - keep_negative - integer
        return FixedQ(keep_negative, integer, f, "SAT_SYM" if c.get("symmetric") and keep_negative else "SAT")
    if name == "quantized_relu":
        if c.get("use_sigmoid") or float(c.get("negative_slope", 0.0)) != 0.0:
            raise _refuse(where, layer, shown, "uses a sigmoid or a negative slope; fastml imports plain "
                          "quantized_relu(bits, integer)")
        if c.get("relu_upper_bound") is not None and not c.get("is_quantized_clip", True):
            raise _refuse(where, layer, shown, "has relu_upper_bound without is_quantized_clip; fastml imports "
                          "plain quantized_relu(bits, integer)")
        bits, integer = int(c.get("bits", 8)), int(c.get("integer", 0))
        return FixedQ(0, integer, bits - integer, "SAT")
    raise _refuse(where, layer, f"{role} {name}", "is not a quantiser fastml imports (expected quantized_bits(bits, "
                  "integer, keep_negative, alpha=1) or quantized_relu(bits, integer))")


# ------------------------------------------------------------------------------------------ reading the file


def read_h5(path: Path) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """(model config, {layer name: weights in order}) of a Keras 2 ``.h5``; ``ConfigError`` naming the file."""
    why = sniff_not_a_model(path, _EXPECTED)
    if why:
        raise ConfigError(why)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ConfigError(f"{path}: an HDF5 file without a model config (weights only?); expected {_EXPECTED}")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            weights: dict[str, list[np.ndarray]] = {}
            group = f["model_weights"] if "model_weights" in f else f
            for name in group:
                names = group[name].attrs.get("weight_names", [])
                weights[name] = [np.asarray(group[name][n.decode() if isinstance(n, bytes) else n]) for n in names]
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError) as err:  # truncated / corrupt HDF5, a dangling weight name, bad JSON
        why = " ".join(str(err).split())[:160]
        raise ConfigError(f"{path}: cannot read this HDF5 model file ({type(err).__name__}: {why}); "
                          f"truncated or corrupt? expected {_EXPECTED}") from None
    if not isinstance(config, dict) or "config" not in config:
        raise ConfigError(f"{path}: the model config is not a Keras model; expected {_EXPECTED}")
    return config, weights


def _layer_chain(config: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The layers in order, checked to be one chain (each takes the previous one's output)."""
    layers = list(config["config"].get("layers") or [])
    if not layers:
        raise ConfigError(f"{where}: the model config lists no layers; expected {_EXPECTED}")
    if config.get("class_name") == "Sequential":
        return layers
    previous = None
    for layer in layers:
        inbound = layer.get("inbound_nodes") or []
        sources = [node[0] for group in inbound for node in group] if inbound else []
        if (previous is None and sources) or (previous is not None and sources != [previous]):
            raise ConfigError(f"{where}: layer {layer.get('name')!r} does not simply follow the previous layer "
                              "(a branching graph); fastml imports QKeras models that are one chain of layers")
        previous = layer.get("name")
    return layers


# -------------------------------------------------------------------------------------------- rebuilding


@dataclass
class _Range:
    """What is known of a tensor: on the grid 2^-f, magnitude at most ``bound``; ``quantised``: from a quantiser."""

    f: int
    bound: float
    quantised: bool


def _exact_sum_check(where: str, layer: str, acc: _Range) -> None:
    bits = math.ceil(math.log2(acc.bound * 2.0 ** acc.f + 1)) + 1  # steps of 2^-f up to the bound, and a sign
    if bits > _FLOAT32_EXACT_BITS:
        raise ConfigError(f"{where}: layer {layer!r}: QKeras sums this layer in float32, but its sums need {bits} "
                          f"significant bits (more than float32's exact {_FLOAT32_EXACT_BITS}), so QKeras's outputs "
                          "are rounded and no firmware reproduces them exactly; use narrower quantisers")


def rebuild_hgq(config: dict[str, Any], weights: dict[str, list[np.ndarray]], where: str) -> tuple[Any, list[str]]:
    """The HGQ2 model computing what the QKeras model computes, and a log of what each layer became."""
    from ..keras_backend import ensure_backend

    ensure_backend()
    import keras
    from hgq.layers import QConv1D, QConv2D, QDense, Quantizer

    chain = _layer_chain(config, where)
    first = chain[0]
    if first.get("class_name") != "InputLayer":
        raise ConfigError(f"{where}: the model does not start with an input layer; expected {_EXPECTED}")
    shape = first["config"].get("batch_input_shape") or first["config"].get("batch_shape")
    inputs = keras.Input(tuple(shape[1:]), name=first["config"].get("name", "input"))
    x: Any = inputs
    state: _Range | None = None  # None: the float model input
    notes: list[str] = []
    for layer in chain[1:]:
        cls, c = layer.get("class_name"), layer.get("config", {})
        name = c.get("name", layer.get("name", "?"))
        if cls == "QActivation":
            q = parse_quantizer(c.get("activation"), where, name, "activation")
            x = Quantizer(q.hgq_config("datalane"), name=name)(x)
            state = _Range(q.f, q.bound, True)
            notes.append(f"{name}: QActivation -> Quantizer(k={q.k}, i={q.i}, f={q.f}, RND_CONV, {q.overflow})")
        elif cls in ("QDense", "QConv1D", "QConv2D"):
            if state is None:
                raise ConfigError(f"{where}: layer {name!r} ({cls}) takes the model's float input: QKeras computes it "
                                  "on unquantised floats, which no firmware reproduces exactly; expected a "
                                  "QActivation(quantized_bits(...)) on the input")
            kq = parse_quantizer(c.get("kernel_quantizer"), where, name, "kernel_quantizer")
            use_bias = bool(c.get("use_bias", True))
            w = weights.get(name, [])
            if len(w) != (2 if use_bias else 1):
                raise ConfigError(f"{where}: layer {name!r} ({cls}) has {len(w)} weight arrays in the file, expected "
                                  f"{2 if use_bias else 1} (truncated or foreign file?)")
            kernel = kq.qkeras_quantize(w[0])
            bias = None
            bq = None
            if use_bias:
                if c.get("bias_quantizer") is None:
                    raise ConfigError(f"{where}: layer {name!r} ({cls}) has no bias_quantizer: QKeras adds a float32 "
                                      "bias, which fastml does not import; expected bias_quantizer=quantized_bits(...)")
                bq = parse_quantizer(c.get("bias_quantizer"), where, name, "bias_quantizer")
                bias = bq.qkeras_quantize(w[1])
            act = c.get("activation", "linear")
            act_q: FixedQ | None = None
            if isinstance(act, (dict, str)) and act not in ("linear", "relu", None):
                act_q = parse_quantizer(act, where, name, "activation")
            elif act not in ("linear", "relu", None):
                raise ConfigError(f"{where}: layer {name!r} ({cls}): activation {act!r} is not imported")
            # the accumulator: products on the grid 2^-(f_in + f_w), bias on 2^-f_b
            per_output = np.abs(kernel.astype(np.float64)).reshape(-1, kernel.shape[-1]).sum(axis=0) * state.bound
            if bias is not None:
                per_output = per_output + np.abs(bias.astype(np.float64))
            acc = _Range(max(state.f + kq.f, bq.f if bq else 0), float(per_output.max(initial=0.0)), False)
            _exact_sum_check(where, name, acc)
            common = {"use_bias": use_bias, "enable_iq": False, "activation": "relu" if act == "relu" else None,
                      "kq_conf": kq.hgq_config("weight"), "name": name}
            if bq is not None:
                common["bq_conf"] = bq.hgq_config("bias")
            if cls == "QDense":
                new = QDense(int(c["units"]), **common)
            else:
                conv = {"filters": int(c["filters"]), "kernel_size": c["kernel_size"], "strides": c.get("strides", 1),
                        "padding": c.get("padding", "valid"), "dilation_rate": c.get("dilation_rate", 1)}
                if c.get("data_format", "channels_last") != "channels_last" or int(c.get("groups", 1)) != 1:
                    raise ConfigError(f"{where}: layer {name!r} ({cls}): only channels_last, ungrouped convolutions "
                                      "are imported")
                new = (QConv1D if cls == "QConv1D" else QConv2D)(**conv, **common)
            x = new(x)
            new.kernel.assign(kernel)
            if bias is not None:
                new.bias.assign(bias)
            state = _Range(acc.f, acc.bound, False)
            notes.append(f"{name}: {cls} -> HGQ2 {type(new).__name__} "
                         f"(kernel k={kq.k} i={kq.i} f={kq.f}" + (f", bias i={bq.i} f={bq.f}" if bq else "") + ")")
            if act_q is not None:
                x = Quantizer(act_q.hgq_config("datalane"), name=f"{name}_activation")(x)
                state = _Range(act_q.f, act_q.bound, True)
        elif cls in ("Flatten", "Reshape", "Dropout", "MaxPooling1D", "MaxPooling2D"):
            new = getattr(keras.layers, cls).from_config(
                {k: v for k, v in c.items() if k in ("name", "target_shape", "rate", "pool_size", "strides",
                                                     "padding", "data_format")})
            x = new(x)  # Dropout: identity at inference
        elif (cls == "Activation" and c.get("activation") == "relu") or cls == "ReLU":
            x = keras.layers.ReLU(name=name)(x)
        elif cls == "Activation" and c.get("activation") == "linear":
            continue
        elif cls == "QBatchNormalization" or cls == "BatchNormalization":
            raise ConfigError(f"{where}: layer {name!r} ({cls}): QKeras computes batch normalisation in floating "
                              "point, which no firmware reproduces exactly; fold it into the preceding layer "
                              "(e.g. QDenseBatchnorm / QConv2DBatchnorm folded weights) before exporting")
        elif cls == "Activation":
            raise ConfigError(f"{where}: layer {name!r} (Activation {c.get('activation')!r}) is a float activation "
                              "that no firmware reproduces exactly; expected QActivation quantisers (a final "
                              "softmax: save the model without it, fastml's firmware outputs logits)")
        else:
            raise ConfigError(f"{where}: layer {name!r} ({cls}) is not a layer fastml imports from QKeras (expected "
                              "QDense, QConv1D, QConv2D, QActivation, Flatten, Reshape, Dropout, MaxPooling)")
    return keras.Model(inputs, x, name=str(config["config"].get("name", "qkeras_model"))), notes


class QKerasModel(ModelKind):
    name = "qkeras"
    Section = QKerasSection
    layout = None
    backends = ("hls4ml",)
    backend_notes: ClassVar[dict[str, str]] = {
        "rtl": "QKeras rounds half to even (tf.round); da4ml 0.5 rounds only by truncation or half up, so its RTL "
               "could not reproduce QKeras exactly: use hls4ml",
        "conifer": "conifer builds decision trees"}
    summary = "a QKeras .h5 model, rebuilt as an equal HGQ2 model with fixed quantisers (no TensorFlow)"
    section: QKerasSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        return check_model_file(cfg, self.section, (".h5", ".hdf5"), "a QKeras model saved as .h5")

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        return None  # checked against the file's input shape when it is read

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedModel:
        path = model_path(cfg, self.section)
        where = str(path)
        config, weights = read_h5(path)
        model, notes = rebuild_hgq(config, weights, where)
        check_io(model, data.input_shape, data.n_classes, where)
        check_backend_support(model, cfg.firmware.backend, where)
        self._check_input_quantiser(model, data, where)
        return loaded_model(self.name, model, path, logits_fn(model), data.n_classes, calibrated=False,
                            extra={"imported_from": "QKeras .h5 (read with h5py; TensorFlow not used)",
                                   "layers": notes})

    @staticmethod
    def _check_input_quantiser(model: Any, data: Dataset, where: str) -> None:
        """QKeras quantises the float input as ``x + (xq - x)`` in float32, which equals ``xq`` unless ``x`` is
        huge; checked on every event of the data rather than assumed."""
        from hgq.layers import Quantizer

        first = next((op for op in model.layers if isinstance(op, Quantizer)), None)
        if first is None:
            return
        k, i, f = (int(np.max(np.asarray(v))) for v in first.quantizer.kif)
        q = FixedQ(k, i, f, first.quantizer.overflow_mode)
        for x in (data.x_train, data.x_val, data.x_test):
            qkeras_way = q.qkeras_quantize(x)
            exact = (np.clip(np.round(x.astype(np.float64) * 2.0 ** f),
                             (-(2.0 ** (i + f)) + (q.overflow == "SAT_SYM")) if k else 0, 2.0 ** (i + f) - 1)
                     / 2.0 ** f)
            bad = int(np.count_nonzero(qkeras_way != exact))
            if bad:
                raise ConfigError(f"{where}: QKeras's float32 input quantisation differs from exact fixed point on "
                                  f"{bad} input values of the data (inputs too large for quantiser f={f}); no "
                                  "firmware reproduces it exactly")

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """The rebuilt HGQ2 model (``model.keras``) and the QKeras file as given (``source_model.h5``)."""
        import shutil

        written = super().save(trained, model_dir)
        source = Path(trained.selection.get("path", ""))
        if source.is_file():
            shutil.copyfile(source, model_dir / "source_model.h5")
            written.append(model_dir / "source_model.h5")
        return written
