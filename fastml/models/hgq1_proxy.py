"""HGQ 1 "proxy" models (a Keras 2 ``.h5`` with ``FixedPointQuantizer`` layers) rebuilt as equal HGQ2 models.

HGQ (version 1) exports a trained model for firmware as a *proxy*: float Keras layers (Dense, Conv, ReLU) that
hold weights already on their fixed-point grid, and a ``FixedPointQuantizer`` wherever a value is quantised.
Each quantiser stores per-element ``keep_negative``, ``bits`` and ``integers`` arrays (bits and integers count
the sign bit) and a rounding (``RND``) and overflow (``SAT``) mode, and computes (HGQ 1 ``gfixed_quantizer``)::

    f = bits - integers;  q(x) = SAT(RND(x * 2^f), keep_negative, bits) / 2^f,  and 0 where bits == 0

i.e. ``ap_fixed<bits, integers>`` (``ap_ufixed`` without the sign) with those modes, as hls4ml builds it. HGQ2
counts the same type as ``k = keep_negative, i = integers - keep_negative, f = bits - integers``, so each
quantiser becomes an HGQ2 ``Quantizer`` holding exactly these per-element k, i, f and modes (an element with
``bits == 0`` gets k = i = f = 0: HGQ2 gives 0 there, as HGQ 1 does). HGQ2's TRN, RND, RND_CONV roundings and
WRAP, SAT, SAT_SYM overflows are HGQ 1's (``floor``, ``floor(x + 1/2)``, half to even; the same ranges); other
modes are refused naming the quantiser. Dense / Conv layers become HGQ2 layers without an input quantiser whose
weight quantisers hold the pre-quantised weights exactly (refused if they are not on a binary grid); their float32
sums are checked to be exact (as the QKeras import does), so the rebuilt model computes what the proxy and the
firmware compute. The proxy's ``overrides`` (hls4ml hints: table sizes, accumulator types) are not used: the
firmware's types follow from the quantisers. HGQ 1 ``UnaryLUT`` tables and branching graphs are refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._internal.keras_backend import ensure_backend
from ..errors import ConfigError
from .qkeras_model import _FLOAT32_EXACT_BITS, FixedQ, _fixed_format

#: HGQ 1 modes that HGQ2 computes the same way (checked against both sources), and hls4ml builds.
ROUND_MODES = ("TRN", "RND", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_SYM")
#: HGQ 1's proxy quantiser (Keras 2 registered names with and without the package).
PROXY_CLASSES = ("FixedPointQuantizer", "HGQ>FixedPointQuantizer")
_WEIGHTED = ("Dense", "Conv1D", "Conv2D")
_PASS = ("Flatten", "Reshape", "MaxPooling1D", "MaxPooling2D")
_IMPORTED = ("FixedPointQuantizer", *_WEIGHTED, "Activation(relu|linear)", "ReLU", "Dropout", *_PASS)
#: A weight needing more fraction bits than this is a float weight, not a proxy's pre-quantised one.
_MAX_WEIGHT_F = 32


def layer_name(layer: dict[str, Any]) -> str:
    config = layer.get("config") if isinstance(layer.get("config"), dict) else {}
    return str(config.get("name", layer.get("name", "?")))


def layer_chain(config: dict[str, Any], where: str, what: str) -> list[dict[str, Any]]:
    """The layers of a Keras 2 model config, checked to be one chain (each takes the previous one's output)."""
    layers = list(config["config"].get("layers") or [])
    if not layers:
        raise ConfigError(f"{where}: the model config lists no layers")
    if config.get("class_name") == "Sequential":
        return layers
    previous = None
    for layer in layers:
        sources = [node[0] for group in layer.get("inbound_nodes") or [] for node in group]
        if (previous is None and sources) or (previous is not None and sources != [previous]):
            raise ConfigError(f"{where}: layer {layer_name(layer)!r} ({layer.get('class_name')}) does not simply "
                              f"follow the previous layer (a branching graph); fastml imports {what} that are one "
                              "chain of layers")
        previous = layer_name(layer)
    return layers


def proxy_kif(where: str, name: str, c: dict[str, Any], w: list[np.ndarray] | None,
              shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, i, f) per element (arrays of ``(1, *shape)``) of a ``FixedPointQuantizer`` on inputs of ``shape``."""
    arrays = [_named(w, n) for n in ("keep_negative", "bits", "integers")]
    if any(a is None for a in arrays):
        raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} (FixedPointQuantizer): the file lacks its "
                          "keep_negative / bits / integers arrays; truncated or foreign file?")
    target = (1, *shape)
    try:
        k, b, i_signed = (np.broadcast_to(np.asarray(a, np.int64).reshape(
            a.shape if a.ndim == len(target) or a.size == 1 else (1, *a.shape)), target) for a in arrays)
    except ValueError:
        raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} (FixedPointQuantizer) has bit widths of shape "
                          f"{tuple(arrays[1].shape)} for inputs of shape {shape}; foreign file?") from None
    if np.any((k != 0) & (k != 1)) or np.any(b < 0):
        raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} (FixedPointQuantizer): keep_negative must be 0 or 1 "
                          "and bits non-negative; foreign file?")
    zero = b == 0  # HGQ 1 outputs 0 there, whatever its integers say
    k = np.where(zero, 0, k)
    i = np.where(zero, 0, i_signed - k)
    f = np.where(zero, 0, b - i_signed)
    return k, i, f


def chain_and_input(config: dict[str, Any], where: str, what: str, expected: str) -> tuple[list[dict[str, Any]], Any]:
    """``layer_chain`` of a Keras 2 config that starts with its input layer, and the Keras 3 input it describes."""
    import keras

    chain = layer_chain(config, where, what)
    first = chain[0]
    if first.get("class_name") != "InputLayer":
        raise ConfigError(f"{where}: the model does not start with an input layer; expected {expected}")
    shape = first["config"].get("batch_input_shape") or first["config"].get("batch_shape")
    return chain, keras.Input(tuple(shape[1:]), name=layer_name(first))


def _named(w: list[np.ndarray] | None, suffix: str) -> np.ndarray | None:
    """The array named ``suffix`` (``dense_1/kernel:0`` or, for HGQ 1's quantisers, ``bits:0``), or None."""
    for name, array in zip(getattr(w, "names", []), w or [], strict=False):
        if name.split(":")[0].split("/")[-1] == suffix:
            return array
    return None


def _bound(k: np.ndarray, i: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Largest magnitude each element can take (0 where it has no bits)."""
    return np.where(k + i + f > 0, 2.0 ** i.astype(np.float64), 0.0)


def _check_exact(where: str, name: str, cls: str, bound: float, f: int) -> None:
    bits = math.ceil(math.log2(bound * 2.0 ** f + 1)) + 1 if bound > 0 else 1
    if bits > _FLOAT32_EXACT_BITS:
        raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}) sums in float32, but its sums need {bits} "
                          f"significant bits (more than float32's exact {_FLOAT32_EXACT_BITS}), so the proxy's "
                          "outputs are rounded and no firmware reproduces them exactly")


def _weight_format(where: str, name: str, cls: str, role: str, values: np.ndarray) -> FixedQ:
    q = _fixed_format(values)
    if q.f > _MAX_WEIGHT_F:
        raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}): its {role} is not on a fixed-point grid "
                          f"(a float weight); expected the proxy HGQ writes, with pre-quantised weights")
    return q


def rebuild_proxy(config: dict[str, Any], weights: dict[str, list[np.ndarray]], where: str
                  ) -> tuple[Any, list[str]]:
    """The HGQ2 model computing what an HGQ 1 proxy model computes, and a log of what each layer became."""
    ensure_backend()
    import keras
    from hgq.layers import QConv1D, QConv2D, QDense, Quantizer
    from hgq.quantizer.config import QuantizerConfig

    chain, inputs = chain_and_input(config, where, "HGQ 1 proxy models", "an HGQ 1 proxy model")
    x: Any = inputs
    # what is known of the current tensor: per-element magnitude bound and the grid 2^-f; None: float input
    bound: np.ndarray | None = None
    grid_f = 0
    notes: list[str] = []
    for layer in chain[1:]:
        cls, c, name = str(layer.get("class_name")), layer.get("config") or {}, layer_name(layer)
        if cls in PROXY_CLASSES:
            rnd, sat = str(c.get("RND", "TRN")).upper(), str(c.get("SAT", "WRAP")).upper()
            if rnd not in ROUND_MODES or sat not in OVERFLOW_MODES:
                raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} (FixedPointQuantizer) rounds with {rnd} and "
                                  f"overflows with {sat}; fastml imports rounding {'/'.join(ROUND_MODES)} and "
                                  f"overflow {'/'.join(OVERFLOW_MODES)}")
            feat = tuple(int(d) for d in x.shape[1:])
            k, i, f = proxy_kif(where, name, c, weights.get(name), feat)
            conf = QuantizerConfig("kif", "datalane", k0=1, i0=0, f0=0, round_mode=rnd, overflow_mode=sat, ic=None,
                                   fc=None, ir=None, fr=None, trainable=False, homogeneous_axis=(0,),
                                   heterogeneous_axis=None)
            q = Quantizer(conf, name=name)
            x = q(x)
            inner = q.quantizer
            for var, values in ((inner._k, k), (inner._i, i), (inner._f, f)):
                var.assign(np.asarray(values, np.float64).reshape(tuple(var.shape)).astype(var.dtype))
            bound = _bound(k, i, f)[0]
            grid_f = int(f[k + i + f > 0].max(initial=0))
            widths = np.unique(k + i + f)
            notes.append(f"{name}: FixedPointQuantizer -> Quantizer(per element k, i, f; {rnd}, {sat}; "
                         f"{widths.min()}..{widths.max()} bits)")
        elif cls in _WEIGHTED:
            if bound is None:
                raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}) takes the model's float input; "
                                  "expected a FixedPointQuantizer before it, as HGQ writes proxies")
            act = c.get("activation", "linear")
            if act not in ("linear", "relu", None):
                raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}) applies activation {act!r} in "
                                  "floating point; fastml imports linear or relu")
            w = weights.get(name)
            kernel = _named(w, "kernel")
            use_bias = bool(c.get("use_bias", True))
            bias = _named(w, "bias") if use_bias else None
            if kernel is None or (use_bias and bias is None):
                raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}): the file lacks its kernel or bias; "
                                  "truncated or foreign file?")
            kq = _weight_format(where, name, cls, "kernel", kernel)
            bq = _weight_format(where, name, cls, "bias", bias) if bias is not None else None
            n_in = kernel.shape[-2]
            if cls == "Dense":  # per input: its own bound
                b_in = bound.reshape(-1, n_in).max(axis=0) if bound.size % n_in == 0 else np.full(n_in, bound.max())
                per_output = np.abs(kernel.astype(np.float64)).T @ b_in
            else:
                per_output = np.abs(kernel.astype(np.float64)).reshape(-1, kernel.shape[-1]).sum(0) * bound.max()
            if bias is not None:
                per_output = per_output + np.abs(bias.astype(np.float64))
            grid_f = max(grid_f + kq.f, bq.f if bq else 0)
            _check_exact(where, name, cls, float(per_output.max(initial=0.0)), grid_f)
            common = {"use_bias": use_bias, "enable_iq": False, "activation": "relu" if act == "relu" else None,
                      "kq_conf": kq.hgq_config("weight"), "name": name, "kernel_initializer": "zeros",
                      "bias_initializer": "zeros"}
            if bq is not None:
                common["bq_conf"] = bq.hgq_config("bias")
            if cls == "Dense":
                new = QDense(int(c["units"]), **common)
            else:
                if c.get("data_format", "channels_last") != "channels_last" or int(c.get("groups", 1)) != 1:
                    raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({cls}): only channels_last, ungrouped "
                                      "convolutions are imported")
                new = (QConv1D if cls == "Conv1D" else QConv2D)(
                    filters=int(c["filters"]), kernel_size=c["kernel_size"], strides=c.get("strides", 1),
                    padding=c.get("padding", "valid"), dilation_rate=c.get("dilation_rate", 1), **common)
            x = new(x)
            new.kernel.assign(kernel.astype(np.float32))
            if bias is not None:
                new.bias.assign(bias.astype(np.float32))
            bound = np.broadcast_to(per_output, tuple(int(d) for d in x.shape[1:])) if cls == "Dense" else np.full(
                tuple(int(d) for d in x.shape[1:]), float(per_output.max(initial=0.0)))
            notes.append(f"{name}: {cls} -> HGQ2 {type(new).__name__} (pre-quantised weights kept exactly: kernel "
                         f"k={kq.k} i={kq.i} f={kq.f}" + (f", bias k={bq.k} i={bq.i} f={bq.f}" if bq else "") + ")")
        elif (cls == "Activation" and c.get("activation") == "relu") or (
                cls == "ReLU" and not c.get("max_value") and not c.get("negative_slope") and not c.get("threshold")):
            # Activation("relu"), not keras.layers.ReLU: hls4ml 1.3 turns a ReLU layer into a ThresholdedReLU whose
            # threshold type (ap_ufixed<2,32>) compares wrongly with negative inputs in ap_types
            x = keras.layers.Activation("relu", name=name)(x)
        elif (cls == "Activation" and c.get("activation") == "linear") or cls == "Dropout":
            continue  # identity at inference
        elif cls in _PASS:
            new = getattr(keras.layers, cls).from_config(
                {k: v for k, v in c.items() if k in ("name", "target_shape", "pool_size", "strides", "padding",
                                                     "data_format")})
            x = new(x)
            if bound is not None:  # reshaped or pooled: keep the widest bound everywhere
                bound = np.full(tuple(int(d) for d in x.shape[1:]), float(bound.max(initial=0.0)))
        else:
            what = f"Activation {c.get('activation')!r}" if cls == "Activation" else cls
            raise ConfigError(f"{where}: HGQ 1 proxy layer {name!r} ({what}) is not a layer fastml imports "
                              f"(expected {', '.join(_IMPORTED)})")
    return keras.Model(inputs, x, name=str(config["config"].get("name", "hgq1_proxy"))), notes
