"""``kind: qkeras`` — a QKeras model file rebuilt as an equal HGQ2 model, without TensorFlow.

The file (a Keras 2 ``.h5``, hls4ml's ``X.json`` + ``X_weights.h5``, or a QKeras v3 ``.keras`` archive: see
``fastml.models.keras_files``, which finds the form from the content) holds the model's config (JSON) and
weights; fastml reads both with h5py and rebuilds the network from HGQ2 layers with fixed (non-trainable)
quantisers that compute what QKeras computes (an HGQ 1 proxy file goes to ``fastml.models.hgq1_proxy``):

- ``quantized_bits(bits, integer, keep_negative, symmetric, alpha=1)``: QKeras computes
  ``clip(round(x * 2^f), lo, hi) / 2^f`` with ``tf.round`` (round half to even) and ``f = bits -
  keep_negative - integer`` -> HGQ2 fixed point ``k=keep_negative, i=integer, f`` with ``RND_CONV``
  rounding and ``SAT`` (``SAT_SYM`` when symmetric) overflow.
- ``quantized_relu(bits, integer)``: ``clip(round(x * 2^f), 0, 2^bits - 1) / 2^f``, ``f = bits - integer``
  -> unsigned ``k=0, i=integer, f``, ``RND_CONV``, ``SAT`` (a negative input rounds/saturates to 0, as ReLU).
- ``QDense`` / ``QConv1D`` / ``QConv2D``: weights quantised here exactly as QKeras does at inference, kept
  in HGQ2 layers whose weight quantisers hold those values exactly; no input quantiser (the preceding
  ``QActivation`` is one). QKeras sums in float32: the import checks that every sum is exact there (at most
  24 significant bits, float32's significand), so HGQ2 (also float32) and the firmware (exact fixed point) agree.
- ``QDenseBatchnorm`` / ``QConv2DBatchnorm`` (batch norm folded in training): at inference QKeras quantises the
  folded kernel ``gamma / sqrt(var + eps) * kernel`` with the kernel quantiser and the folded bias
  ``inv * (bias - mean) + beta`` with the bias quantiser, in float32; fastml computes the same for every
  float32 value TensorFlow's inexact ``rsqrt`` could give and refuses if the quantised result is not the same
  for all (``fold_batchnorm_layer``). The result is a plain HGQ2 ``QDense`` / ``QConv2D``.
- A standalone ``QBatchNormalization`` right after a ``QDense`` / ``QConv`` without activation is folded into it
  when QKeras's float32 ``x * inv + (beta - mean * inv)`` is exact (``inv`` a power of two, quantized_bits or no
  parameter quantisers); otherwise refused saying why (``fold_standalone_batchnorm``).
- ``QActivation`` -> an HGQ2 ``Quantizer`` layer; ``Flatten``, ``Reshape``, ``Dropout``, ``MaxPooling``,
  ``ReLU`` pass through; ``GlobalAveragePooling1D`` over a power-of-two number of steps -> HGQ2's (a shift).
- The float edges (``fastml.models.float_edges``), made explicit and recorded (``selection["float_edges"]``): a
  float model input gets an input quantiser (``model.input_precision``, ``auto``: 16 bits, integer bits from the
  training split's range); a float ``Dense`` inside gets fixed-point weights (``model.float_precision``, ``auto``:
  from the weights' range); ``auto`` gives up fraction bits where HGQ2's float32 sums would otherwise round. A
  final softmax / sigmoid is dropped (the firmware outputs logits). The reference is the model with exactly these
  quantisers; the model as published is the report's float model.

Refused with one line naming the layer and the quantiser (never approximated): ``alpha`` other than 1
(``"auto"``, ``"auto_po2"``, or no alpha on a kernel quantiser, which QKeras turns into ``auto_po2``),
stochastic rounding, ``qnoise_factor`` below 1, po2/binary/ternary quantisers, a ``QBatchNormalization`` that
cannot be folded exactly (QKeras computes it in float32), float layers with weights other than ``Dense``, float
activations other than ReLU inside the network, ``model.keep_softmax: true`` (not built for QKeras models yet),
branching graphs.

Backends: hls4ml, and rtl with ``firmware.compiler: alkaid``. QKeras rounds half to even; da4ml 0.5 (the rtl
backend's default compiler) rounds only by truncation or half up, so its RTL could not reproduce QKeras on ties
(the rtl layer check refuses it in one line, naming alkaid).
"""

from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from .._internal.keras_backend import ensure_backend
from ..errors import ConfigError
from .base import ModelKind, TrainedModel
from .float_edges import FixedType, FloatEdge, resolve_precision
from .imported import (
    ImportedSection,
    check_io,
    loaded_model,
    model_path,
    sniff_not_a_model,
)
from .network import logits_fn

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig

#: float32's significand holds 24 bits (23 stored, one implicit; the sign is a separate bit): every sum whose
#: magnitude is at most 2^24 steps of its grid is exact, whatever the order of the additions.
_FLOAT32_EXACT_BITS = 24
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
            nested = _nested_bits(call)
            if nested is not None:
                return nested
            try:
                args = [ast.literal_eval(a) for a in call.args]
                kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
            except ValueError:
                return spec, {}
            names = {"quantized_bits": ("bits", "integer", "symmetric", "keep_negative", "alpha"),
                     "quantized_relu": ("bits", "integer", "use_sigmoid", "negative_slope")}.get(call.func.id, ())
            return call.func.id, {**dict(zip(names, args, strict=False)), **kwargs}
    return repr(spec)[:60], {}


def _nested_bits(call: ast.Call) -> tuple[str, dict[str, Any]] | None:
    """``quantized_relu(quantized_bits(8, 0, alpha=1), 0)``: a string some exporters write (l1-jet-id's
    ``format_qactivation(activation, nbits)`` handed the already formatted ``quantized_bits(...)`` string as
    ``nbits``). Its author meant ``quantized_relu(8, 0)``: the inner quantiser's bit count, with the same integer
    bits. Read so when the inner call is a plain ``quantized_bits(bits, integer, alpha=1)`` whose integer bits
    equal the outer ones; anything else is left for ``parse_quantizer`` to refuse (``_nested_refusal``)."""
    if call.func.id != "quantized_relu" or not call.args or not isinstance(call.args[0], ast.Call):  # type: ignore[attr-defined]
        return None
    inner_name, inner = _quantizer_spec(ast.unparse(call.args[0]))
    try:
        outer_integer = ast.literal_eval(call.args[1]) if len(call.args) > 1 else 0
        extra = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except ValueError:
        outer_integer, extra = None, {}
    outer_integer = extra.pop("integer", outer_integer)
    written = ast.unparse(call)
    if (inner_name != "quantized_bits" or inner.get("alpha", 1) not in (1, 1.0, None) or extra
            or not isinstance(inner.get("bits"), int) or inner.get("integer", 0) != outer_integer):
        return "quantized_relu", {"_nested_refusal": written}
    return "quantized_relu", {"bits": inner["bits"], "integer": outer_integer, "_nested_from": written}


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
        if "_nested_refusal" in c:
            raise _refuse(where, layer, f"{role} {c['_nested_refusal']!r}", "nests a quantiser in quantized_relu in a "
                          "way fastml cannot read as quantized_relu(bits, integer); expected quantized_relu(bits, "
                          "integer), or quantized_bits(bits, integer, alpha=1) inside with the same integer bits")
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


class LayerWeights(list):
    """A layer's weight arrays in file order, with their names (``conv_bn/batch_normalization/gamma:0``)."""

    def __init__(self, arrays: list[np.ndarray], names: list[str]) -> None:
        super().__init__(arrays)
        self.names = names

    def named(self, suffix: str) -> np.ndarray | None:
        """The array whose name ends in ``/<suffix>:0`` (folded layers store the batch norm's after the kernel's
        in an order that differs between versions), or None."""
        for name, array in zip(getattr(self, "names", []), self, strict=False):
            if name.split(":")[0].endswith("/" + suffix):
                return array
        return None


def h5_layer_weights(f: Any) -> dict[str, list[np.ndarray]]:
    """{layer name: weights in order} of an open Keras 2 HDF5 file (a full model's ``model_weights`` group, or
    the root of a weights-only file written by ``save_weights``)."""
    weights: dict[str, list[np.ndarray]] = {}
    group = f["model_weights"] if "model_weights" in f else f
    for name in group:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group[name].attrs.get("weight_names", [])]
        weights[name] = LayerWeights([np.asarray(group[name][n]) for n in names], names)
    return weights


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
            weights = h5_layer_weights(f)
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


def _sum_bits(acc: _Range) -> int:
    """Significant bits of the worst-case sum's magnitude: steps of 2^-f up to the bound (the sign apart)."""
    return math.ceil(math.log2(acc.bound * 2.0 ** acc.f + 1))


def _exact_sum_check(where: str, layer: str, acc: _Range) -> None:
    bits = _sum_bits(acc)
    if bits > _FLOAT32_EXACT_BITS:
        raise ConfigError(f"{where}: layer {layer!r}: QKeras sums this layer in float32, but its sums need {bits} "
                          f"significant bits (more than float32's exact {_FLOAT32_EXACT_BITS}), so QKeras's outputs "
                          "are rounded and no firmware reproduces them exactly; use narrower quantisers")


#: QKeras layers that fold a batch normalisation into their kernel and bias, and the plain layer they become.
_FOLDED = {"QDenseBatchnorm": "QDense", "QConv2DBatchnorm": "QConv2D"}
_WEIGHTED = ("QDense", "QConv1D", "QConv2D", *_FOLDED)
#: TensorFlow's float32 rsqrt (Eigen) is not correctly rounded: measured within 2 units in the last place of the
#: correctly rounded value on CPU; every float32 within this many is tried, so the result never depends on which.
_RSQRT_ULPS = 8


def _float32_neighbours(x: np.ndarray, ulps: int) -> list[np.ndarray]:
    """``x`` (float32) and the float32 values up to ``ulps`` steps below and above it, element-wise."""
    out, down, up = [x], x, x
    for _ in range(ulps):
        down, up = np.nextafter(down, np.float32(-np.inf)), np.nextafter(up, np.float32(np.inf))
        out += [down, up]
    return out


def _bn_params(where: str, name: str, cls: str, c: dict[str, Any], w: list[np.ndarray], rank: int
               ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray, np.ndarray, np.float32]:
    """(gamma or None, beta or None, moving mean, moving variance, epsilon) of a batch norm, checked to be the
    plain per-channel (last axis of a ``rank``-dimensional tensor, batch included) inference form."""
    axis = c.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, rank - 1) or c.get("renorm") or c.get("virtual_batch_size"):
        raise ConfigError(f"{where}: layer {name!r} ({cls}): only a batch norm over the last (channel) axis, without "
                          "renorm or virtual batches, is imported")
    named = getattr(w, "named", lambda _suffix: None)
    gamma = named("gamma") if c.get("scale", True) else None
    beta = named("beta") if c.get("center", True) else None
    mean, variance = named("moving_mean"), named("moving_variance")
    if mean is None or variance is None or (c.get("scale", True) and gamma is None) or (
            c.get("center", True) and beta is None):
        raise ConfigError(f"{where}: layer {name!r} ({cls}): the file lacks its batch-norm weights (gamma, beta, "
                          "moving_mean, moving_variance); truncated or foreign file?")
    f32 = np.float32
    return (None if gamma is None else gamma.astype(f32), None if beta is None else beta.astype(f32),
            mean.astype(f32), variance.astype(f32), f32(c.get("epsilon", 1e-3)))


def fold_batchnorm_layer(where: str, name: str, cls: str, c: dict[str, Any], w: list[np.ndarray], kq: FixedQ,
                         bq: FixedQ) -> tuple[np.ndarray, np.ndarray]:
    """The quantised kernel and bias QKeras's ``QDenseBatchnorm`` / ``QConv2DBatchnorm`` apply at inference.

    QKeras (0.9.0 ``qconv2d_batchnorm.py``, and ``qdense_batchnorm.py`` after it), float32, either folding mode::

        inv = rsqrt(moving_variance + epsilon) * gamma
        kernel_q = kernel_quantizer(inv * kernel)
        bias_q = bias_quantizer(inv * (bias - moving_mean) + beta)

    TensorFlow's rsqrt is not correctly rounded, so this is computed for every float32 ``rsqrt`` within
    ``_RSQRT_ULPS`` of the exact one (and with the bias's multiply-add fused or not); the quantised values must be
    the same for all of them, else the import fails naming the weight (QKeras's value would depend on TensorFlow's
    float arithmetic, which fastml does not guess).
    """
    kernel = w.named("kernel") if hasattr(w, "named") else None
    # a kernel's rank equals its output's (dense (in, out) -> (batch, out); conv2d (kh, kw, in, out) -> 4 axes)
    gamma, beta, mean, variance, eps = _bn_params(where, name, cls, c, w, 2 if kernel is None else kernel.ndim)
    if kernel is None:
        raise ConfigError(f"{where}: layer {name!r} ({cls}): the file has no kernel for it; truncated or foreign file?")
    kernel = kernel.astype(np.float32)
    bias = w.named("bias") if c.get("use_bias", True) else None
    bias = np.zeros_like(mean) if bias is None else bias.astype(np.float32)
    shifted = (bias - mean).astype(np.float32)
    exact_rsqrt = (1.0 / np.sqrt((variance + eps).astype(np.float64))).astype(np.float32)
    kernels: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for rsqrt in _float32_neighbours(exact_rsqrt, _RSQRT_ULPS):
        inv = rsqrt if gamma is None else (rsqrt * gamma).astype(np.float32)
        kernels.append(kq.qkeras_quantize((inv * kernel).astype(np.float32)))
        plus_beta = np.float32(0) if beta is None else beta
        separate = ((inv * shifted).astype(np.float32) + plus_beta).astype(np.float32)
        fused = (inv.astype(np.float64) * shifted + plus_beta).astype(np.float32)
        biases += [bq.qkeras_quantize(separate), bq.qkeras_quantize(fused)]
    for role, values, flat_shape in (("kernel", kernels, kernel.shape), ("bias", biases, mean.shape)):
        differs = np.zeros(flat_shape, bool)
        for v in values[1:]:
            differs |= v != values[0]
        if differs.any():
            where_first = tuple(int(i) for i in np.argwhere(differs)[0])
            raise ConfigError(f"{where}: layer {name!r} ({cls}): the folded {role}{list(where_first)} lies within "
                              "float32 rounding of a step of its quantiser, so QKeras's value depends on TensorFlow's "
                              "inexact rsqrt; no firmware reproduces it for certain (retrain or change the quantiser)")
    return kernels[0], biases[0]


def _fixed_format(values: np.ndarray) -> FixedQ:
    """The narrowest fixed-point format holding every value exactly (values already on a binary grid)."""
    v = np.abs(values.astype(np.float64)).ravel()
    f = 0
    while f < 60 and np.any(v * 2.0 ** f != np.round(v * 2.0 ** f)):
        f += 1
    while f > -30 and np.all(v * 2.0 ** (f - 1) == np.round(v * 2.0 ** (f - 1))):
        f -= 1
    top = float(v.max(initial=0.0)) + 2.0 ** -f
    return FixedQ(int(bool(np.any(values < 0))), max(math.ceil(math.log2(top)), -f + 1) if top > 0 else -f + 1, f,
                  "SAT")


def fold_standalone_batchnorm(where: str, name: str, c: dict[str, Any], w: list[np.ndarray], kernel: np.ndarray,
                              bias: np.ndarray | None, previous: str, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``QBatchNormalization`` right after ``previous`` (a QDense/QConv without activation) folded into that
    layer's kernel and bias, when that is exact; else a one-line ``ConfigError`` saying why.

    QKeras computes ``x * inv + (beta - mean * inv)`` in float32 with ``inv = gamma * rsqrt(variance + epsilon)``
    (``tf.nn.batch_normalization``, parameters through their quantisers). Exact in fixed point only when ``inv`` is
    a power of two (the product then only shifts ``x``), i.e. ``variance + epsilon`` a power of four and ``gamma``
    a power of two: then kernel * inv, bias * inv + (beta - mean * inv) is the folded layer. Returns (kernel, bias,
    smallest inv) for the range check.
    """
    cls = "QBatchNormalization"
    quantised: dict[str, np.ndarray | None] = {}
    gamma, beta, mean, variance, eps = _bn_params(where, name, cls, c, w, rank)
    for role, value in (("gamma", gamma), ("beta", beta), ("mean", mean), ("variance", variance)):
        spec = c.get(f"{role}_quantizer")
        if value is None or spec is None:
            quantised[role] = value
            continue
        qname, _ = _quantizer_spec(spec)
        if qname != "quantized_bits":
            raise ConfigError(f"{where}: layer {name!r} ({cls}) after {previous!r}: {role}_quantizer {qname}; "
                              "fastml folds a standalone QBatchNormalization only when its scale "
                              "gamma/sqrt(variance+epsilon) is exactly a power of two, with quantized_bits or no "
                              "parameter quantisers; otherwise QKeras multiplies and rounds in float32, which no "
                              "firmware reproduces: use QDenseBatchnorm / QConv2DBatchnorm (folded in training)")
        quantised[role] = parse_quantizer(spec, where, name, f"{role}_quantizer").qkeras_quantize(value)
    v = (quantised["variance"] + eps).astype(np.float32)
    exponent = np.log2(v.astype(np.float64))
    gamma_q = quantised["gamma"]
    scale = (1.0 / np.sqrt(v.astype(np.float64))) * (1.0 if gamma_q is None else gamma_q.astype(np.float64))
    log_scale = np.log2(np.abs(scale), where=scale != 0, out=np.full(scale.shape, 0.5))
    po2 = (v > 0) & (exponent == np.round(exponent)) & (np.round(exponent) % 2 == 0) & (scale != 0) & (
        log_scale == np.round(log_scale))
    if not po2.all():
        ch = int(np.argwhere(~po2)[0][0])
        raise ConfigError(f"{where}: layer {name!r} ({cls}) after {previous!r}: its scale gamma/sqrt(variance+epsilon) "
                          f"is {float(scale[ch]):.6g} on channel {ch} (epsilon={float(eps):g}), not a power of two, so "
                          "QKeras multiplies and rounds in float32 and no firmware reproduces it exactly; use "
                          "QDenseBatchnorm / QConv2DBatchnorm (folded in training)")
    inv = scale.astype(np.float32)  # exact powers of two (rsqrt of a power of four is exact in TensorFlow too)
    offset = (np.float32(0) if quantised["beta"] is None else quantised["beta"]) - (quantised["mean"] * inv)
    offset = offset.astype(np.float32)  # TensorFlow rounds this in float32; it is a constant of the folded bias
    folded_kernel = kernel.astype(np.float64) * inv
    folded_bias = (0.0 if bias is None else bias.astype(np.float64) * inv) + offset.astype(np.float64)
    if np.any(folded_bias.astype(np.float32) != folded_bias):
        raise ConfigError(f"{where}: layer {name!r} ({cls}) after {previous!r}: the folded bias needs more than "
                          "float32's 24 significant bits, so QKeras's float32 sum rounds it; no exact import")
    return folded_kernel.astype(np.float32), folded_bias.astype(np.float32)


@dataclass
class EdgePolicy:
    """How ``rebuild_hgq`` treats a published model's float edges (``fastml.models.float_edges``).

    ``input_precision`` / ``float_precision``: ``auto`` or a fixed-point type (the recipe's keys); ``auto`` reads
    ``x_train`` (the training split) for the input. ``keep_softmax``: build a final softmax instead of dropping it.
    ``as_published``: build the float edges as float instead (the model as its author ran it, the report's float
    model; never a bit-exact reference). ``edges`` collects every choice made (``FloatEdge``), in model order.
    """

    input_precision: str = "auto"
    float_precision: str = "auto"
    keep_softmax: bool = False
    x_train: np.ndarray | None = None
    as_published: bool = False
    edges: list[FloatEdge] = field(default_factory=list)


#: Final activations a score or argmax does not need: monotonic, so the decision on the logit is the same.
_OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def _accumulator(state: _Range, kernel: np.ndarray, bias: np.ndarray | None, f_w: int, f_b: int | None) -> _Range:
    """The sums of a weighted layer: products on the grid 2^-(f_in + f_w), bias on 2^-f_b; worst-case magnitude."""
    per_output = np.abs(kernel.astype(np.float64)).reshape(-1, kernel.shape[-1]).sum(axis=0) * state.bound
    if bias is not None:
        per_output = per_output + np.abs(bias.astype(np.float64))
    return _Range(max(state.f + f_w, f_b if f_b is not None else 0), float(per_output.max(initial=0.0)), False)


def _choose_input(edges: EdgePolicy, input_name: str, layer: str, kernel: np.ndarray, bias: np.ndarray | None,
                  kq: FixedQ, bq: FixedQ | None, where: str) -> FixedType:
    """The input quantiser's type: the recipe's, or ``auto`` from the training split, with fraction bits cut (and
    said) where the first layer's float32 sums would otherwise be inexact (HGQ2 sums in float32)."""
    if edges.x_train is None and str(edges.input_precision).strip().lower() == "auto":
        raise ConfigError(f"{where}: model.input_precision: auto needs the training data; give a fixed-point type")
    values = edges.x_train if edges.x_train is not None else np.zeros(1)
    chosen, how = resolve_precision(edges.input_precision, values, "model.input_precision")
    auto = how.startswith("auto")
    first = chosen
    while True:
        acc = _accumulator(_Range(chosen.f, 2.0 ** chosen.i, True), kernel, bias, kq.f, bq.f if bq else None)
        if _sum_bits(acc) <= _FLOAT32_EXACT_BITS:
            break
        if not auto or chosen.f <= 0:
            raise ConfigError(f"{where}: model.input_precision {str(chosen)!r}: layer {layer!r} then sums values "
                              f"needing {_sum_bits(acc)} significant bits, more than float32's exact "
                              f"{_FLOAT32_EXACT_BITS} (HGQ2 computes the reference in float32); expected a type with "
                              "fewer fraction bits")
        chosen = FixedType(chosen.k, chosen.i, chosen.f - 1)
    if chosen != first:
        how += f"; {first.f - chosen.f} fraction bits fewer than {first.width} so {layer!r} sums exactly in float32"
    edges.edges.append(FloatEdge(input_name, "input", f"input quantiser {chosen} ({how}), rounding half to even, "
                                 "saturating"))
    return chosen


def _float_dense(edges: EdgePolicy, name: str, state: _Range, kernel: np.ndarray, bias: np.ndarray | None,
                 where: str) -> tuple[FixedQ, FixedQ | None]:
    """Fixed-point types for a float ``Dense`` inside the network (``model.float_precision``): ``auto`` from the
    weights' own ranges (16 bits), the bias no finer than the products, fraction bits cut (and said) until the
    layer's float32 sums are exact. Its outputs are then exact sums of fixed-point products: no output quantiser."""
    kt, khow = resolve_precision(edges.float_precision, kernel, "model.float_precision")
    bt, bhow = (resolve_precision(edges.float_precision, bias, "model.float_precision") if bias is not None
                else (None, ""))
    auto = khow.startswith("auto")
    khow, bhow = (how.replace("training range", "weight range") for how in (khow, bhow))
    first = kt
    while True:
        if auto and bt is not None:
            bt = FixedType(bt.k, bt.i, min(bt.f, state.f + kt.f))  # finer than the products' grid adds nothing
        acc = _accumulator(state, kernel, bias, kt.f, bt.f if bt else None)
        if _sum_bits(acc) <= _FLOAT32_EXACT_BITS:
            break
        if not auto or kt.f <= 0:
            raise ConfigError(f"{where}: layer {name!r} (Dense, float): with model.float_precision "
                              f"{edges.float_precision!r} its sums need {_sum_bits(acc)} significant bits, more "
                              f"than float32's exact {_FLOAT32_EXACT_BITS} (HGQ2 computes the reference in float32); "
                              "expected a type with fewer fraction bits")
        kt = FixedType(kt.k, kt.i, kt.f - 1)
    if kt != first:
        khow += f"; {first.f - kt.f} fraction bits fewer than {first.width} so that its sums are exact in float32"
    choice = f"kernel {kt} ({khow})" + (f", bias {bt} ({bhow})" if bt is not None else "")
    edges.edges.append(FloatEdge(name, "float layer", choice + "; rounding half to even, saturating; outputs exact"))
    return (FixedQ(kt.k, kt.i, kt.f, "SAT"), FixedQ(bt.k, bt.i, bt.f, "SAT") if bt is not None else None)


def _output_activation(cls: str, c: dict[str, Any]) -> str | None:
    """``softmax`` / ``sigmoid`` when the layer is that activation alone (Activation, QActivation, Softmax)."""
    if cls == "Softmax":
        return "softmax"
    act = c.get("activation")
    if cls in ("Activation", "QActivation") and isinstance(act, str) and act in _OUTPUT_ACTIVATIONS:
        return act
    return None


def _drop_output_activation(edges: EdgePolicy, name: str, act: str, where: str) -> None:
    """A final softmax / sigmoid: dropped (recorded), or refused where ``keep_softmax`` asks for it."""
    if edges.keep_softmax and not edges.as_published:
        raise ConfigError(f"{where}: layer {name!r}: model.keep_softmax: true is not built for QKeras models yet (a "
                          f"final {act} as lookup tables whose float32 reference matches hls4ml's is not verified); "
                          "expected keep_softmax: false, which builds the logits (same argmax, same cuts)")
    what = ("the class with the largest logit is the class with the largest probability" if act == "softmax" else
            "a cut on the logit is a cut on the sigmoid")
    edges.edges.append(FloatEdge(name, "output activation",
                                 f"final {act} dropped: the firmware outputs logits ({what})"))


def rebuild_hgq(config: dict[str, Any], weights: dict[str, list[np.ndarray]], where: str, *,
                edges: EdgePolicy | None = None) -> tuple[Any, list[str]]:
    """The HGQ2 model computing what the QKeras model computes, and a log of what each layer became.

    ``edges``: how to treat the model's float edges (a float input, a float ``Dense`` inside, a final softmax or
    sigmoid), each choice recorded in ``edges.edges``; None refuses them (one line naming the layer).
    """

    ensure_backend()
    import keras
    from hgq.layers import QConv1D, QConv2D, QDense, QGlobalAveragePooling1D, Quantizer

    chain = _layer_chain(config, where)
    first = chain[0]
    if first.get("class_name") != "InputLayer":
        raise ConfigError(f"{where}: the model does not start with an input layer; expected {_EXPECTED}")
    shape = first["config"].get("batch_input_shape") or first["config"].get("batch_shape")
    input_name = first["config"].get("name", "input")
    inputs = keras.Input(tuple(shape[1:]), name=input_name)
    x: Any = inputs
    exact = edges is None or not edges.as_published  # the float model as published: no range bookkeeping
    state: _Range | None = None  # None: the float model input
    notes: list[str] = []
    folded_into: dict[int, str] = {}  # chain index of a standalone QBatchNormalization -> the layer it went into
    last = len(chain) - 1
    for index, layer in enumerate(chain):
        if index == 0 or index in folded_into:
            continue
        cls, c = layer.get("class_name"), layer.get("config", {})
        name = c.get("name", layer.get("name", "?"))
        final_act = _output_activation(cls, c)
        if final_act is not None and index == last and edges is not None:
            _drop_output_activation(edges, name, final_act, where)
            notes.append(f"{name}: final {final_act} dropped (logits)")
        elif cls == "QActivation":
            q = parse_quantizer(c.get("activation"), where, name, "activation")
            x = Quantizer(q.hgq_config("datalane"), name=name)(x)
            if state is None:
                state = _Range(q.f, q.bound, True)
            else:  # values already on a coarser grid or in a narrower range stay there (rounding adds < one step)
                state = _Range(min(state.f, q.f), min(q.bound, state.bound + q.step), True)
            nested = _quantizer_spec(c.get("activation"))[1].get("_nested_from")
            notes.append(f"{name}: QActivation -> Quantizer(k={q.k}, i={q.i}, f={q.f}, RND_CONV, {q.overflow})"
                         + (f" ({nested!r} read as quantized_relu({q.f + q.i}, {q.i}))" if nested else ""))
        elif cls in _WEIGHTED:
            if state is None and edges is None:
                raise ConfigError(f"{where}: layer {name!r} ({cls}) takes the model's float input: QKeras computes it "
                                  "on unquantised floats, which no firmware reproduces exactly; expected a "
                                  "QActivation(quantized_bits(...)) on the input")
            kq = parse_quantizer(c.get("kernel_quantizer"), where, name, "kernel_quantizer")
            use_bias = bool(c.get("use_bias", True))
            w = weights.get(name, [])
            if cls in _FOLDED:
                if c.get("bias_quantizer") is None:
                    raise ConfigError(f"{where}: layer {name!r} ({cls}) has no bias_quantizer: QKeras adds its folded "
                                      "bias in float32, which fastml does not import; expected "
                                      "bias_quantizer=quantized_bits(...)")
                bq = parse_quantizer(c.get("bias_quantizer"), where, name, "bias_quantizer")
                kernel, bias = fold_batchnorm_layer(where, name, cls, c, w, kq, bq)
                use_bias = True
            elif len(w) != (2 if use_bias else 1):
                raise ConfigError(f"{where}: layer {name!r} ({cls}) has {len(w)} weight arrays in the file, expected "
                                  f"{2 if use_bias else 1} (truncated or foreign file?)")
            else:
                kernel = kq.qkeras_quantize(w[0])
                bias = None
                bq = None
            if use_bias and cls not in _FOLDED:
                if c.get("bias_quantizer") is None:
                    raise ConfigError(f"{where}: layer {name!r} ({cls}) has no bias_quantizer: QKeras adds a float32 "
                                      "bias, which fastml does not import; expected bias_quantizer=quantized_bits(...)")
                bq = parse_quantizer(c.get("bias_quantizer"), where, name, "bias_quantizer")
                bias = bq.qkeras_quantize(w[1])
            act = c.get("activation", "linear")
            act_q: FixedQ | None = None
            if index == last and edges is not None and act in _OUTPUT_ACTIVATIONS:
                _drop_output_activation(edges, name, str(act), where)
                act = "linear"
            if isinstance(act, (dict, str)) and act not in ("linear", "relu", None):
                act_q = parse_quantizer(act, where, name, "activation")
            elif act not in ("linear", "relu", None):
                raise ConfigError(f"{where}: layer {name!r} ({cls}): activation {act!r} is not imported")
            if state is None and exact:
                assert edges is not None
                t = _choose_input(edges, input_name, name, kernel, bias, kq, bq, where)
                x = Quantizer(FixedQ(t.k, t.i, t.f, "SAT").hgq_config("datalane"), name=f"{input_name}_quantizer")(x)
                state = _Range(t.f, 2.0 ** t.i, True)
                notes.append(f"{input_name}_quantizer: input quantiser {t} added (model.input_precision)")
            if exact:
                assert state is not None
                acc = _accumulator(state, kernel, bias, kq.f, bq.f if bq else None)
                _exact_sum_check(where, name, acc)
            following = chain[index + 1] if index + 1 < len(chain) else {}
            if following.get("class_name") == "QBatchNormalization" and act in ("linear", None):
                bn_name = following.get("config", {}).get("name", following.get("name", "?"))
                kernel, bias = fold_standalone_batchnorm(where, bn_name, following.get("config", {}),
                                                         weights.get(bn_name, []), kernel, bias, name, kernel.ndim)
                kq, bq, use_bias = _fixed_format(kernel), _fixed_format(bias), True
                if exact:
                    assert state is not None
                    acc = _accumulator(state, kernel, bias, kq.f, bq.f)
                    _exact_sum_check(where, bn_name, acc)
                folded_into[index + 1] = name
                notes.append(f"{bn_name}: QBatchNormalization folded exactly into {name} (power-of-two scale)")
            # zeros: the weights are assigned below; the default glorot initialiser compiles JAX's random
            # number generator (~1 s per layer shape here) for values thrown away
            common = {"use_bias": use_bias, "enable_iq": False, "activation": "relu" if act == "relu" else None,
                      "kq_conf": kq.hgq_config("weight"), "name": name, "kernel_initializer": "zeros",
                      "bias_initializer": "zeros"}
            if bq is not None:
                common["bq_conf"] = bq.hgq_config("bias")
            if _FOLDED.get(cls, cls) == "QDense":
                new = QDense(int(c["units"]), **common)  # QDenseBatchnorm: the folded kernel and bias
            else:
                conv = {"filters": int(c["filters"]), "kernel_size": c["kernel_size"], "strides": c.get("strides", 1),
                        "padding": c.get("padding", "valid"), "dilation_rate": c.get("dilation_rate", 1)}
                if c.get("data_format", "channels_last") != "channels_last" or int(c.get("groups", 1)) != 1:
                    raise ConfigError(f"{where}: layer {name!r} ({cls}): only channels_last, ungrouped convolutions "
                                      "are imported")
                new = (QConv1D if cls == "QConv1D" else QConv2D)(**conv, **common)  # QConv2DBatchnorm: folded
            x = new(x)
            new.kernel.assign(kernel)
            if bias is not None:
                new.bias.assign(bias)
            if exact:
                state = _Range(acc.f, acc.bound, False)
            notes.append(f"{name}: {cls} -> HGQ2 {type(new).__name__}"
                         + (" (batch norm folded as QKeras does at inference)" if cls in _FOLDED else "") + " "
                         f"(kernel k={kq.k} i={kq.i} f={kq.f}" + (f", bias i={bq.i} f={bq.f}" if bq else "") + ")")
            if act_q is not None:
                x = Quantizer(act_q.hgq_config("datalane"), name=f"{name}_activation")(x)
                state = _Range(act_q.f, act_q.bound, True)
        elif cls == "Dense" and edges is not None:
            x, state = _float_dense_layer(edges, name, c, weights.get(name, []), x, state, exact, index == last,
                                          where, notes)
        elif cls == "GlobalAveragePooling1D":
            if c.get("data_format", "channels_last") != "channels_last" or c.get("keepdims"):
                raise ConfigError(f"{where}: layer {name!r} ({cls}): only channels_last without keepdims is imported")
            n = int(x.shape[-2])
            if n & (n - 1):
                raise ConfigError(f"{where}: layer {name!r} ({cls}) averages {n} values: a division by {n}, not a "
                                  "power of two, which fixed point does not compute exactly; expected 2, 4, 8, ... "
                                  "steps (or a sum)")
            if state is None and exact:
                raise ConfigError(f"{where}: layer {name!r} ({cls}) takes the model's float input; expected a "
                                  "QActivation or QDense before it")
            x = QGlobalAveragePooling1D(name=name, enable_iq=False)(x)
            if exact:
                assert state is not None
                # the mean of n values on the grid 2^-f is on 2^-(f + log2 n): a shift, exact (hls4ml's bit-exact
                # pass widens the same way); float32 is exact while the sum fits its 24 bits
                shift = n.bit_length() - 1
                summed = _Range(state.f, state.bound * n, False)
                _exact_sum_check(where, name, summed)
                state = _Range(state.f + shift, state.bound, False)
            notes.append(f"{name}: {cls} -> HGQ2 QGlobalAveragePooling1D (mean of {n}: a shift, exact)")
        elif cls in ("Flatten", "Reshape", "Dropout", "MaxPooling1D", "MaxPooling2D"):
            new = getattr(keras.layers, cls).from_config(
                {k: v for k, v in c.items() if k in ("name", "target_shape", "rate", "pool_size", "strides",
                                                     "padding", "data_format")})
            x = new(x)  # Dropout: identity at inference
        elif (cls == "Activation" and c.get("activation") == "relu") or cls == "ReLU":
            x = keras.layers.ReLU(name=name)(x)
        elif cls == "Activation" and c.get("activation") == "linear":
            continue
        elif cls == "QBatchNormalization":
            previous = chain[index - 1]
            raise ConfigError(f"{where}: layer {name!r} ({cls}) follows {previous.get('class_name')} "
                              f"{previous.get('config', {}).get('name')!r}, not a QDense/QConv without activation, so "
                              "it cannot be folded and QKeras computes it in float32, which no firmware reproduces "
                              "exactly; use QDenseBatchnorm / QConv2DBatchnorm (folded in training)")
        elif cls == "BatchNormalization":
            raise ConfigError(f"{where}: layer {name!r} ({cls}): a float batch normalisation, computed in floating "
                              "point, which no firmware reproduces exactly; use QDenseBatchnorm / QConv2DBatchnorm "
                              "(folded in training) before exporting")
        elif cls in ("Activation", "Softmax"):
            act_name = "softmax" if cls == "Softmax" else c.get("activation")
            raise ConfigError(f"{where}: layer {name!r} ({cls} {act_name!r}) is a float activation "
                              "that no firmware reproduces exactly; expected QActivation quantisers (a final "
                              "softmax or sigmoid is dropped, the firmware outputs logits)")
        else:
            raise ConfigError(f"{where}: layer {name!r} ({cls}) is not a layer fastml imports from QKeras (expected "
                              "QDense, QConv1D, QConv2D, QActivation, Dense, GlobalAveragePooling1D, Flatten, Reshape, "
                              "Dropout, MaxPooling)")
    return keras.Model(inputs, x, name=str(config["config"].get("name", "qkeras_model"))), notes


def _float_dense_layer(edges: EdgePolicy, name: str, c: dict[str, Any], w: list[np.ndarray], x: Any,
                       state: _Range | None, exact: bool, is_last: bool, where: str, notes: list[str]
                       ) -> tuple[Any, _Range | None]:
    """A float ``Dense`` inside a QKeras model: as published, a Keras ``Dense``; otherwise an HGQ2 ``QDense`` with
    the fixed-point weights ``model.float_precision`` gives (recorded)."""
    import keras
    from hgq.layers import QDense

    use_bias = bool(c.get("use_bias", True))
    if len(w) != (2 if use_bias else 1):
        raise ConfigError(f"{where}: layer {name!r} (Dense) has {len(w)} weight arrays in the file, expected "
                          f"{2 if use_bias else 1} (truncated or foreign file?)")
    act = c.get("activation", "linear")
    if is_last and act in _OUTPUT_ACTIVATIONS:
        _drop_output_activation(edges, name, str(act), where)
        act = "linear"
    if act not in ("linear", "relu", None):
        raise ConfigError(f"{where}: layer {name!r} (Dense, float): activation {act!r} is a float function that no "
                          "firmware reproduces exactly; expected linear or relu")
    kernel = np.asarray(w[0], np.float32)
    bias = np.asarray(w[1], np.float32) if use_bias else None
    init = {"use_bias": use_bias, "activation": "relu" if act == "relu" else None, "name": name,
            "kernel_initializer": "zeros", "bias_initializer": "zeros"}
    if not exact:
        new = keras.layers.Dense(int(c["units"]), **init)
        x = new(x)
        new.kernel.assign(kernel)
        if bias is not None:
            new.bias.assign(bias)
        return x, state
    if state is None:
        raise ConfigError(f"{where}: layer {name!r} (Dense, float) takes the model's float input; expected a QKeras "
                          "layer first")
    kq, bq = _float_dense(edges, name, state, kernel, bias, where)
    kernel_q = kq.qkeras_quantize(kernel)  # round half to even and saturate, as the quantiser below does
    bias_q = bq.qkeras_quantize(bias) if bq is not None and bias is not None else None
    new = QDense(int(c["units"]), enable_iq=False, kq_conf=kq.hgq_config("weight"),
                 **({"bq_conf": bq.hgq_config("bias")} if bq is not None else {}), **init)
    x = new(x)
    new.kernel.assign(kernel_q)
    if bias_q is not None:
        new.bias.assign(bias_q)
    acc = _accumulator(state, kernel_q, bias_q, kq.f, bq.f if bq else None)
    _exact_sum_check(where, name, acc)
    notes.append(f"{name}: float Dense -> HGQ2 QDense (kernel k={kq.k} i={kq.i} f={kq.f}"
                 + (f", bias i={bq.i} f={bq.f}" if bq else "") + ", model.float_precision)")
    return x, _Range(acc.f, acc.bound, False)  # a ReLU only narrows it


def import_qkeras(kind: str, config: dict[str, Any], weights: dict[str, list[np.ndarray]], path: Path,
                  section: ImportedSection, data: Dataset, check_layers: Any, extra: dict[str, Any]) -> TrainedModel:
    """A QKeras model (its Keras config and weights, however read) as a ``TrainedModel``: rebuilt in HGQ2 with its
    float edges made explicit from ``section`` (recorded in ``selection["float_edges"]``); ``predict_quantized`` is
    the model with exactly those quantisers (the bit-exact reference), ``predict_float`` the model as published
    (float input, float layers; its final softmax/sigmoid left out, which changes no argmax or cut)."""
    where = str(path)
    edges = EdgePolicy(section.input_precision, section.float_precision, section.keep_softmax, data.x_train)
    model, notes = rebuild_hgq(config, weights, where, edges=edges)
    check_io(model, data.input_shape, data.n_classes, where)
    if check_layers is not None:
        check_layers(model, where)
    if not any(edge.edge == "input" for edge in edges.edges):  # the model's own QActivation quantises the input
        QKerasModel._check_input_quantiser(model, data, where)
    trained = loaded_model(kind, model, path, logits_fn(model), data.n_classes, calibrated=False,
                           extra={**extra, "layers": notes, "float_edges": [e.as_dict() for e in edges.edges]})
    if edges.edges:
        published, _ = rebuild_hgq(config, weights, where, edges=EdgePolicy(as_published=True))
        trained.float_model = published
        trained.predict_float = logits_fn(published)
    return trained


class QKerasModel(ModelKind):
    name = "qkeras"
    Section = QKerasSection
    layout = None
    # rtl: with firmware.compiler alkaid (half-to-even rounding, saturation); the rtl backend's layer check
    # refuses da4ml 0.5 in one line (it rounds only by truncation or half up, so could not reproduce QKeras)
    backends = ("hls4ml", "rtl")
    backend_notes: ClassVar[dict[str, str]] = {"conifer": "conifer builds decision trees"}
    summary = "a QKeras .h5 model, rebuilt as an equal HGQ2 model with fixed quantisers (no TensorFlow)"
    section: QKerasSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        from .keras_files import check_keras_file  # deferred: keras_files builds on this module's rebuild_hgq

        return check_keras_file(cfg, self.section, "a QKeras model file (.h5, .keras, or X.json + X_weights.h5)")

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        return None  # checked against the file's input shape when it is read

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedModel:
        from .keras_files import import_proxy, read_keras_file  # deferred: keras_files builds on rebuild_hgq

        path = model_path(cfg, self.section)
        where = str(path)
        source = read_keras_file(path)  # the importer is found from the file's content
        if source.form == "hgq1_proxy":
            return import_proxy(self.name, source, data, self.check_layers)
        if source.form != "qkeras" or source.config is None or source.weights is None:
            raise ConfigError(f"{where}: a {source.origin} without QKeras layers; expected {_EXPECTED} (a float or "
                              "HGQ2 model: model.kind keras)")
        return import_qkeras(self.name, source.config, source.weights, path, self.section, data, self.check_layers,
                             {"imported_from": f"{source.origin} (read with h5py; TensorFlow not used)"})

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
        """The rebuilt HGQ2 model (``model.keras``) and the file(s) it came from as given (``source_model.h5``,
        ``.keras``, or ``source_model.json`` + ``source_model_weights.h5``)."""
        from .keras_files import copy_sources  # deferred: keras_files builds on this module's rebuild_hgq

        return super().save(trained, model_dir) + copy_sources(trained, model_dir)
