"""alkaid's trace of a QONNX graph (``fastml.backends.rtl.qonnx_trace``): bit-exact with qonnx's own execution on a
small graph with every traced op (narrow and unsigned quantisers, a shift, ties on the input), and one-line
refusals naming the node (an op it does not trace, a Mul by a factor that is not a power of two, compiler da4ml).
The recipe built end to end is tests/integration/test_byo_models.py::test_qonnx_to_verilog_through_alkaid_*."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError

pytestmark = pytest.mark.skipif(importlib.util.find_spec("qonnx") is None or importlib.util.find_spec("alkaid") is None,
                                reason="not run: qonnx or alkaid is not installed")


def _graph(tmp_path: Path, factor: float = 0.5, extra_op: str | None = None) -> Path:
    """x (8) -> Quant(signed 8 bits, 2^-4, narrow) -> MatMul(W, 8x4, quantised 5 bits) -> Mul(factor) -> Add(b)
    -> Relu -> Quant(unsigned 6 bits, 2^-3) [-> extra_op] -> MatMul(V, 4x3) -> y (3), saved as .onnx."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = {"W": rng.normal(size=(8, 4)).astype(np.float32), "V": (rng.integers(-8, 8, (4, 3)) / 8).astype(np.float32),
             "b": (rng.integers(-16, 16, 4) / 16).astype(np.float32), "c": np.asarray(factor, np.float32)}
    for name, (scale, bits) in {"qi": (2.0**-4, 8), "qw": (2.0**-3, 5), "qr": (2.0**-3, 6)}.items():
        inits |= {f"{name}_s": np.asarray(scale, np.float32), f"{name}_z": np.asarray(0, np.float32),
                  f"{name}_b": np.asarray(bits, np.float32)}

    def quant(src: str, q: str, out: str, signed: int, narrow: int) -> onnx.NodeProto:
        return helper.make_node("Quant", [src, f"{q}_s", f"{q}_z", f"{q}_b"], [out], name=f"Quant_{q}",
                                domain="qonnx.custom_op.general", signed=signed, narrow=narrow, rounding_mode="ROUND")

    last = "r_q"
    nodes = [quant("x", "qi", "x_q", 1, 1), quant("W", "qw", "W_q", 1, 0),
             helper.make_node("MatMul", ["x_q", "W_q"], ["h"], name="MatMul_0"),
             helper.make_node("Mul", ["h", "c"], ["hs"], name="Mul_0"),
             helper.make_node("Add", ["hs", "b"], ["hb"], name="Add_0"),
             helper.make_node("Relu", ["hb"], ["r"], name="Relu_0"), quant("r", "qr", "r_q", 0, 0)]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["r_q"], ["e"], name=f"{extra_op}_0"))
        last = "e"
    nodes.append(helper.make_node("MatMul", [last, "V"], ["y"], name="MatMul_1"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general", 1)])
    path = tmp_path / "g.onnx"
    onnx.save(model, str(path))
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_traced_graph_matches_qonnx_execution_bit_for_bit(tmp_path: Path) -> None:
    from fastml.backends.rtl.qonnx_trace import trace_qonnx
    from fastml.models.qonnx_model import execute, load_qonnx

    wrapper = load_qonnx(_graph(tmp_path))
    comb, port = trace_qonnx(wrapper, "g.onnx")
    assert port == (1, 3 + 8, 4 + 24)  # 8 bits signed at 2^-4: i = 3, f = 4; widened for the firmware's rounding
    rng = np.random.default_rng(0)
    x = rng.normal(0, 4, (4000, 8)).astype(np.float32)
    x[:1000] = np.round(x[:1000] * 32) / 32  # half-way between two 2^-4 steps: rounding to even decides
    x[1000:1500] *= 100  # saturation (the narrow input: symmetric)
    y_qonnx = execute(wrapper, x)
    y_alkaid = np.asarray(comb.predict(x.astype(np.float64)), np.float32).reshape(y_qonnx.shape)
    assert int(np.count_nonzero(y_alkaid != y_qonnx)) == 0
    assert np.unique(y_qonnx).size > 100  # not a constant network


@pytest.mark.parametrize(("extra", "factor", "expected"), [
    ("Sigmoid", 0.5, "node 'Sigmoid_0' (Sigmoid) cannot be traced by alkaid"),
    (None, 0.3, "node 'Mul_0' (Mul) multiplies by [0.3"),
])
def test_untraceable_node_is_refused_in_one_line_naming_it(tmp_path: Path, extra: str | None, factor: float,
                                                           expected: str) -> None:
    from fastml.backends.rtl.qonnx_trace import trace_qonnx
    from fastml.models.qonnx_model import load_qonnx

    with pytest.raises(ConfigError) as err:
        trace_qonnx(load_qonnx(_graph(tmp_path, factor, extra)), "g.onnx")
    assert _one_line(err).startswith("g.onnx: ") and expected in str(err.value)


def test_compiler_da4ml_is_refused_with_the_alkaid_hint(tmp_path: Path) -> None:
    from fastml.backends.rtl import check_compiler_layers
    from fastml.models.qonnx_model import QONNXGraph, load_qonnx

    path = _graph(tmp_path)
    graph = QONNXGraph(load_qonnx(path), path)
    with pytest.raises(ConfigError) as err:
        check_compiler_layers(graph, str(path), "da4ml")
    assert "firmware.compiler 'da4ml' cannot build a QONNX graph" in _one_line(err)
    assert err.value.args[0].endswith("firmware.compiler: alkaid traces it")
    check_compiler_layers(graph, str(path), "alkaid")  # takes every node
