"""alkaid trace of a cleaned QONNX graph (``model.kind qonnx``, ``firmware.compiler: alkaid``), bit-exact with
qonnx's own execution (``execute_onnx``, the build's reference).

The graph (after qonnx's clean-up and fastml's float edges, ``fastml.models.qonnx_model``) is walked node by node
in graph order with alkaid's symbolic arrays (``alkaid.trace.FVArray``); what each node becomes:

==================  ===================================================================================================
``Quant``           ``quantize(k, i, f, SAT or SAT_SYM (narrow), RND_CONV)``: QONNX clips to the integer range and
                    rounds half to even (``ROUND``); a power-of-two scale 2^-f and zero point 0 make that fixed point.
                    On a constant (a weight), qonnx's own ``quant`` function computes the value.
``MatMul``          a traced row times a constant matrix: alkaid's constant-matrix multiplication (``hard_dc`` as for
                    Keras models, ``fastml._internal.alkaid``)
``Add``             traced plus constant (a bias) or traced plus traced
``Mul``             by a constant power of two (a shift), which float32 also computes exactly
``Relu``            ``maximum(x, 0)``
==================  ===================================================================================================

Anything else is refused in one line naming the node and its op type. The reference computes in float32, so every
traced sum must fit float32's 24-bit significand (then float32 is exact too); a wider one is refused by node.

The input port: the input ``Quant`` saturates and rounds half to even inside the firmware, so the port carries the
raw value with ``alkaid.INPUT_GUARD_FRAC_BITS`` more fraction bits and ``alkaid.INPUT_HEADROOM_INT_BITS`` more
integer bits than that quantiser's format, as for a saturating Keras input (``fastml._internal.alkaid``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..._internal import alkaid
from ...errors import ConfigError, FastmlError
from ...models.qonnx_model import node_attribute, quant_scale_exponents

#: The op types traced (see the module docstring).
TRACED_OPS = ("Quant", "MatMul", "Add", "Mul", "Relu")
#: float32's significand: a fixed-point value of at most this many bits is exact in qonnx's float32 arithmetic.
FLOAT32_BITS = 24


def _name(node: Any) -> str:
    return f"node {node.name!r} ({node.op_type})"


def quant_format(wrapper: Any, node: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The ``(k, i, f)`` arrays and overflow mode (``SAT`` / ``SAT_SYM``) of a ``Quant`` node: QONNX's integer range
    ``[min_int, max_int]`` times the scale 2^-f. ``ConfigError`` naming the node for a form fixed point cannot hold."""
    exponent = quant_scale_exponents(wrapper, node, where)
    bits = wrapper.get_initializer(node.input[3])
    if bits is None:
        raise ConfigError(f"{where}: {_name(node)} has a bit width computed at run time; expected a constant")
    signed, narrow = int(node_attribute(node, "signed", 1)), int(node_attribute(node, "narrow", 0))
    bits = np.asarray(bits, np.float64)
    if np.any(bits != np.round(bits)) or np.any(bits < 1 + signed):
        raise ConfigError(f"{where}: {_name(node)} has bit width {bits.ravel()[:3]}; expected whole numbers of at "
                          f"least {1 + signed} bits (a 1-bit signed Quant is bipolar, not fixed point)")
    if narrow and not signed:
        raise ConfigError(f"{where}: {_name(node)} is unsigned with narrow: 1 (range 0 .. 2^b - 2), which no "
                          "saturating fixed-point format holds; expected narrow: 0")
    f = -np.round(exponent).astype(np.int64)
    i = np.round(bits).astype(np.int64) - signed - f
    return np.full_like(f, signed), i, f, "SAT_SYM" if narrow else "SAT"


def input_port(wrapper: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(k, i, f)`` of each input element: the input ``Quant``'s format widened (see the module docstring)."""
    inp = wrapper.graph.input[0].name
    readers = wrapper.find_consumers(inp) or []
    if len(readers) != 1 or readers[0].op_type != "Quant" or readers[0].input[0] != inp:
        found = ", ".join(_name(r) for r in readers) or "nothing"
        raise ConfigError(f"{where}: the graph input {inp!r} is read by {found}; expected one Quant node (or none, "
                          "then model.input_precision adds it)")
    _k, i, f, _ = quant_format(wrapper, readers[0], where)
    shape = tuple(int(d) for d in wrapper.get_tensor_shape(inp))
    return (np.ones(shape, np.int64), np.broadcast_to(i + alkaid.INPUT_HEADROOM_INT_BITS, shape),
            np.broadcast_to(f + alkaid.INPUT_GUARD_FRAC_BITS, shape))


def check_graph(wrapper: Any, where: str) -> None:
    """One-line ``ConfigError`` naming the first node alkaid's QONNX trace does not take (before any compile)."""
    for node in wrapper.graph.node:
        if node.op_type not in TRACED_OPS:
            raise ConfigError(f"{where}: {_name(node)} cannot be traced by alkaid (firmware.backend 'rtl'); "
                              f"expected only {', '.join(TRACED_OPS)} after qonnx's clean-up, or "
                              "firmware.backend: hls4ml (hls4ml's QONNX front end)")
        if node.op_type == "Quant":
            quant_format(wrapper, node, where)
    input_port(wrapper, where)


def check_qonnx_build(wrapper: Any, where: str, compiler: str) -> None:
    """One-line ``ConfigError`` unless ``compiler`` is alkaid and it traces every node of the graph."""
    if compiler != "alkaid":
        raise ConfigError(f"{where}: firmware.compiler {compiler!r} cannot build a QONNX graph (it traces Keras "
                          "models only); firmware.compiler: alkaid traces it")
    try:
        alkaid.version()
    except FastmlError as err:
        raise ConfigError(f"{where}: {err}") from None
    check_graph(wrapper, where)


def _constant(node: Any, args: list[np.ndarray]) -> np.ndarray:
    """A node of constants, as qonnx computes it (float32)."""
    if node.op_type == "Quant":
        from qonnx.custom_op.general.quant import quant

        signed, narrow = int(node_attribute(node, "signed", 1)), int(node_attribute(node, "narrow", 0))
        return np.asarray(quant(*args, signed, narrow, node_attribute(node, "rounding_mode", "ROUND")), np.float32)
    a = [np.asarray(v, np.float32) for v in args]
    ops = {"MatMul": np.matmul, "Add": np.add, "Mul": np.multiply, "Relu": lambda x: np.maximum(x, 0)}
    return ops[node.op_type](*a)


def _traced(node: Any, args: list[Any], wrapper: Any, where: str) -> Any:
    """A node with at least one traced (``FVArray``) operand, as alkaid logic."""
    from alkaid.trace import FVArray

    op, x = node.op_type, args[0]
    consts = [a for a in args if not isinstance(a, FVArray)]
    if op == "Quant":
        if not isinstance(x, FVArray) or len(consts) != len(args) - 1:
            raise ConfigError(f"{where}: {_name(node)} has quantiser parameters computed at run time; expected "
                              "constants")
        k, i, f, overflow = quant_format(wrapper, node, where)
        shape = x.shape
        return x.quantize(np.broadcast_to(k, shape), np.broadcast_to(i, shape), np.broadcast_to(f, shape),
                          overflow, "RND_CONV")
    if op == "Relu":
        return np.maximum(x, 0.0)
    if op == "MatMul":
        if consts != [args[1]] or np.ndim(args[1]) != 2:
            raise ConfigError(f"{where}: {_name(node)} multiplies by something other than a constant matrix on the "
                              "right; alkaid's trace takes x @ W with W a (quantised) initializer")
        return x @ np.asarray(args[1], np.float64)
    if op == "Mul":
        if len(consts) != 1:
            raise ConfigError(f"{where}: {_name(node)} multiplies two computed tensors; expected a constant factor")
        c = np.asarray(consts[0], np.float64)
        exponent = np.log2(np.abs(np.where(c == 0, 1.0, c)))
        if np.any(exponent != np.round(exponent)):
            raise ConfigError(f"{where}: {_name(node)} multiplies by {c.ravel()[:3]}, not a power of two; qonnx "
                              "rounds that product in float32, which no firmware reproduces exactly")
        traced = args[1] if consts[0] is args[0] else args[0]
        return traced * c
    return args[0] + args[1]  # Add: traced + constant or traced + traced


def _check_float32_exact(node: Any, value: Any, where: str) -> None:
    bits = int(np.max(np.sum(value.kif, axis=0)))
    if bits > FLOAT32_BITS:
        raise ConfigError(f"{where}: {_name(node)} gives values of {bits} bits; qonnx's execution (the reference) "
                          f"computes in float32 ({FLOAT32_BITS}-bit significand) and would round them, so no firmware "
                          "matches it bit for bit; expected narrower quantisers before it")


def trace_qonnx(wrapper: Any, where: str) -> tuple[Any, tuple[int, int, int]]:
    """alkaid ``CombLogic`` of the cleaned QONNX graph ``wrapper`` (one input, one output) and the widest input
    element's port format ``(k, i, f)``; ``ConfigError`` naming the first node it cannot build exactly."""
    from alkaid.trace import FVArray, HWConfig, trace

    alkaid.version()
    check_graph(wrapper, where)
    k, i, f = input_port(wrapper, where)
    inp = FVArray.from_kif(k, i, f, HWConfig(*alkaid.HW_CONFIG), 0.0, {"hard_dc": alkaid.HARD_DC})
    values: dict[str, Any] = {init.name: wrapper.get_initializer(init.name) for init in wrapper.graph.initializer}
    values[wrapper.graph.input[0].name] = inp
    for node in wrapper.graph.node:  # qonnx's clean-up leaves the nodes in topological order
        missing = [name for name in node.input if name and name not in values]
        if missing:
            raise ConfigError(f"{where}: {_name(node)} reads {missing[0]!r} before any node computes it; expected "
                              "a graph in topological order (qonnx's clean-up sorts it)")
        args = [values[name] for name in node.input if name]
        if any(isinstance(a, FVArray) for a in args):
            out = _traced(node, args, wrapper, where)
            if node.op_type in ("MatMul", "Add", "Mul"):
                _check_float32_exact(node, out, where)
        else:
            out = _constant(node, args)
        values[node.output[0]] = out
    out = values[wrapper.graph.output[0].name]
    if not isinstance(out, FVArray):
        raise ConfigError(f"{where}: the graph output does not depend on its input; expected a network")
    widest = int(np.argmax(np.asarray(k) + i + f))
    port = (int(np.ravel(k)[widest]), int(np.ravel(i)[widest]), int(np.ravel(f)[widest]))
    try:
        return trace(inp.ravel(), out.ravel()), port
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{where}: alkaid cannot trace this graph: {' '.join(str(err).split())[:200]}") from None


__all__ = ["FLOAT32_BITS", "TRACED_OPS", "check_graph", "check_qonnx_build", "input_port", "quant_format",
           "trace_qonnx"]
