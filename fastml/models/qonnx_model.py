"""``kind: qonnx`` — a QONNX model (``.onnx`` with ``Quant`` nodes: Brevitas / FINN / QKeras exports).

The graph is cleaned with qonnx's own transforms (``cleanup_model``, ``ConvertToChannelsLastAndClean``,
``GemmToMatMul``), converted by hls4ml's QONNX front end (``convert_from_onnx_model``) and checked against
qonnx's own execution (``execute_onnx``, the reference the firmware must reproduce bit for bit). Needs the
``qonnx`` extra (``.venv/bin/python -m pip install -e '.[qonnx]'``); without it the build says so in one line.

Only the hls4ml backend takes ONNX (da4ml traces Keras models). ``Quant`` rounds with ``ROUND`` (half to
even) and power-of-two scales map to fixed point; any other scale or rounding mode is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError
from .base import ModelKind, TrainedModel
from .imported import (
    ImportedSection,
    check_input_shape,
    check_model_file,
    check_outputs,
    loaded_model,
    model_path,
    sniff_not_a_model,
)

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig

_EXPECTED = "a QONNX model (.onnx with Quant nodes, e.g. a Brevitas export)"
#: qonnx runs the graph node by node in Python: events per call.
_BATCH = 2000


class QONNXSection(ImportedSection):
    """A QONNX ``.onnx`` file (relative to the recipe)."""

    kind: Literal["qonnx"] = "qonnx"


def _need_qonnx(where: str) -> None:
    try:
        import qonnx  # noqa: F401
    except ImportError:
        raise ConfigError(f"{where}: model.kind 'qonnx' needs the qonnx package: .venv/bin/python -m pip install "
                          "-e '.[qonnx]'") from None


def clean(model: Any) -> Any:
    """qonnx's clean-up for hls4ml: shapes and constants folded, channels last, Gemm as MatMul."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = cleanup_model(model)
    model = model.transform(ConvertToChannelsLastAndClean())
    model = model.transform(GemmToMatMul())
    return cleanup_model(model)


def execute(model: Any, x: np.ndarray) -> np.ndarray:
    """qonnx's ``execute_onnx`` on every event of ``x`` (batched: the graph's batch size is set per call)."""
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes

    inp, out = model.graph.input[0].name, model.graph.output[0].name
    in_shape = list(model.get_tensor_shape(inp))
    out_shape = list(model.get_tensor_shape(out))
    x = np.asarray(x, np.float32).reshape(len(x), *in_shape[1:])
    results, batched = [], {}
    for start in range(0, len(x), _BATCH):
        chunk = x[start:start + _BATCH]
        n = len(chunk)
        if n not in batched:
            m = model.transform(InferShapes())  # a copy with the batch size n throughout
            m.graph.ClearField("value_info")
            m.set_tensor_shape(inp, [n, *in_shape[1:]])
            m.set_tensor_shape(out, [n, *out_shape[1:]])
            batched[n] = m.transform(InferShapes())
        results.append(np.asarray(execute_onnx(batched[n], {inp: chunk})[out], np.float32).reshape(n, -1))
    return np.concatenate(results) if results else np.zeros((0, int(np.prod(out_shape[1:]))), np.float32)


class QONNXGraph:
    """A cleaned QONNX graph where the pipeline expects a model: shapes like Keras' (batch axis None), weights
    counted. The hls4ml backend converts it through hls4ml's QONNX front end (``fastml.backends.hls4ml.qonnx``)."""

    def __init__(self, wrapper: Any, source: Path) -> None:
        self.wrapper = wrapper
        self.source = source
        inp, out = wrapper.graph.input[0].name, wrapper.graph.output[0].name
        self.input_shape = (None, *wrapper.get_tensor_shape(inp)[1:])
        self.output_shape = (None, *wrapper.get_tensor_shape(out)[1:])

    def input_fraction_bits(self) -> int:
        """Fraction bits of the Quant node that reads the graph's input (0 if the input is not quantised)."""
        name = self.wrapper.graph.input[0].name
        for node in self.wrapper.graph.node:
            if node.op_type == "Quant" and node.input[0] == name:
                scale = np.asarray(self.wrapper.get_initializer(node.input[1]), np.float64)
                return max(0, int(np.max(-np.log2(np.abs(scale)))))
        return 0

    def count_params(self) -> int:
        return int(sum(np.prod(init.dims) for init in self.wrapper.graph.initializer))


def load_qonnx(path: Path) -> Any:
    """The cleaned ``ModelWrapper`` of ``path``; ``ConfigError`` naming the file if it is not a QONNX model."""
    why = sniff_not_a_model(path, _EXPECTED)
    if why:
        raise ConfigError(why)
    _need_qonnx(str(path))
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as err:  # protobuf DecodeError, onnx ValidationError: a truncated or foreign file
        why = " ".join(str(err).split())[:160] or type(err).__name__
        raise ConfigError(f"{path}: not a readable ONNX model ({type(err).__name__}: {why}); "
                          f"expected {_EXPECTED}") from None
    # exporters such as Brevitas (torch.onnx) also list every initializer as a graph input (pre-IR-4 style);
    # those are weights, not inputs the event feeds: drop them so graph.input[0] is the event
    weights = {init.name for init in proto.graph.initializer}
    data_inputs = [i for i in proto.graph.input if i.name not in weights]
    if len(data_inputs) != len(proto.graph.input):
        del proto.graph.input[:]
        proto.graph.input.extend(data_inputs)
    if len(proto.graph.input) != 1 or len(proto.graph.output) != 1:
        raise ConfigError(f"{path}: the graph has {len(proto.graph.input)} inputs and {len(proto.graph.output)} "
                          "outputs; expected one input (the event) and one output (the class scores)")
    for node in proto.graph.node:
        if node.op_type == "Quant":
            mode = next((a.s.decode() for a in node.attribute if a.name == "rounding_mode"), "ROUND")
            if mode != "ROUND":
                raise ConfigError(f"{path}: node {node.name!r} (Quant) rounds with {mode!r}; fastml imports ROUND "
                                  "(half to even), which hls4ml reproduces exactly")
    try:
        return clean(ModelWrapper(proto))
    except Exception as err:  # qonnx transforms assert on graphs they cannot handle
        why = " ".join(str(err).split())[:160] or type(err).__name__
        raise ConfigError(f"{path}: qonnx cannot clean this graph ({type(err).__name__}: {why}); "
                          f"expected {_EXPECTED}") from None


def _check_power_of_two_scales(wrapper: Any, where: str) -> None:
    """hls4ml maps a Quant to fixed point only with a power-of-two scale and zero point 0."""
    for node in wrapper.graph.node:
        if node.op_type != "Quant":
            continue
        scale, zeropt = wrapper.get_initializer(node.input[1]), wrapper.get_initializer(node.input[2])
        if scale is None or zeropt is None:
            raise ConfigError(f"{where}: node {node.name!r} (Quant) has a scale or zero point computed at run time; "
                              "expected constants")
        exponents = np.log2(np.abs(np.asarray(scale, np.float64)))
        if np.any(exponents != np.round(exponents)) or np.any(np.asarray(zeropt) != 0):
            raise ConfigError(f"{where}: node {node.name!r} (Quant) has scale {np.asarray(scale).ravel()[:3]} and "
                              f"zero point {np.asarray(zeropt).ravel()[:3]}: not fixed point (expected power-of-two "
                              "scales and zero point 0), so no firmware reproduces it exactly")


class QONNXModel(ModelKind):
    name = "qonnx"
    Section = QONNXSection
    layout = None
    backends = ("hls4ml",)
    backend_notes: ClassVar[dict[str, str]] = {"rtl": "da4ml traces Keras models, not ONNX graphs: use hls4ml",
                                               "conifer": "conifer builds decision trees"}
    summary = "a QONNX model (.onnx with Quant nodes), hls4ml's QONNX front end, checked against qonnx execution"
    section: QONNXSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        return check_model_file(cfg, self.section, (".onnx",), "a QONNX model saved as .onnx")

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        return None  # checked against the graph's input when it is read

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedModel:
        path = model_path(cfg, self.section)
        wrapper = load_qonnx(path)
        graph = QONNXGraph(wrapper, path)
        check_input_shape(tuple(graph.input_shape[1:]), data.input_shape, str(path))
        check_outputs(tuple(graph.output_shape[1:]), data.n_classes, str(path))
        _check_power_of_two_scales(wrapper, str(path))
        return loaded_model(self.name, graph, path, lambda x: execute(wrapper, x), data.n_classes, calibrated=False,
                            extra={"imported_from": "QONNX (qonnx clean-up, hls4ml's QONNX front end)",
                                   "reference": "qonnx execute_onnx"})

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """The cleaned graph as built (``model.onnx``) and the file as given (``source_model.onnx``)."""
        import shutil

        trained.model.wrapper.save(str(model_dir / "model.onnx"))
        shutil.copyfile(trained.model.source, model_dir / "source_model.onnx")
        return [model_dir / "model.onnx", model_dir / "source_model.onnx"]
