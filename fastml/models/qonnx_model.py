"""``kind: qonnx`` — a QONNX model (``.onnx`` with ``Quant`` nodes: Brevitas / FINN / QKeras exports).

The graph is cleaned with qonnx's own transforms (``cleanup_model``, ``ConvertToChannelsLastAndClean``,
``GemmToMatMul``), converted by hls4ml's QONNX front end (``convert_from_onnx_model``) and checked against
qonnx's own execution (``execute_onnx``, the reference the firmware must reproduce bit for bit). Needs the
``qonnx`` extra (``.venv/bin/python -m pip install -e '.[qonnx]'``); without it the build says so in one line.

The hls4ml backend takes ONNX through hls4ml's front end; the rtl backend with ``firmware.compiler: alkaid``
traces the graph node by node (``fastml.backends.rtl.qonnx_trace``; da4ml traces Keras models only, refused by the
backend's ``check_layers``). ``Quant`` rounds with ``ROUND`` (half to even) and power-of-two scales map to fixed
point; any other scale or rounding mode is refused by name.

Files as the QONNX model zoo publishes them: the clean-up runs before any check (it rewrites the legacy
``finn.custom_op.general`` / ``onnx.brevitas`` domains). A graph without any ``Quant`` (a float export),
``MultiThreshold`` nodes and float ``BatchNormalization`` are refused by node: hls4ml cannot build them to
match qonnx's float32 arithmetic. The float edges become explicit (``fastml.models.float_edges``): an input
no ``Quant`` reads gets a real ``Quant`` node of ``model.input_precision``, a final ``Softmax`` is dropped;
each choice is in ``selection["float_edges"]``, ``predict_float`` runs the graph as published.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..errors import ConfigError
from .base import ModelKind, TrainedModel
from .float_edges import FloatEdge, resolve_precision
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
    """The cleaned ``ModelWrapper`` of ``path``; ``ConfigError`` naming the file if it is not a QONNX model.

    qonnx's clean-up runs first (it rewrites the legacy ``finn.custom_op.general`` / ``onnx.brevitas`` domains
    of model-zoo files), and only the cleaned graph is checked: the raw file of a zoo model fails
    ``onnx.checker`` (no opset import for its legacy domain) although qonnx and hls4ml read it.
    """
    why = sniff_not_a_model(path, _EXPECTED)
    if why:
        raise ConfigError(why)
    _need_qonnx(str(path))
    import onnx
    from qonnx.core.modelwrapper import ModelWrapper

    try:
        proto = onnx.load(str(path))
    except Exception as err:  # protobuf DecodeError: a truncated or foreign file
        raise ConfigError(f"{path}: not a readable ONNX model ({type(err).__name__}: {_words(err)}); "
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
    try:
        with warnings.catch_warnings():
            # qonnx's notes on the domains it rewrote and on GemmToMatMul's opset: nothing a user can act on
            warnings.simplefilter("ignore", UserWarning)
            wrapper = clean(ModelWrapper(proto))
    except Exception as err:  # qonnx transforms assert on graphs they cannot handle
        raise ConfigError(f"{path}: qonnx cannot clean this graph ({type(err).__name__}: {_words(err)}); "
                          f"expected {_EXPECTED}") from None
    _check_cleaned(wrapper, path)
    for node in wrapper.graph.node:
        if node.op_type == "Quant":
            mode = node_attribute(node, "rounding_mode", "ROUND")
            if mode != "ROUND":
                raise ConfigError(f"{path}: node {node.name!r} (Quant) rounds with {mode!r}; fastml imports ROUND "
                                  "(half to even), which hls4ml reproduces exactly")
    return wrapper


def _words(err: BaseException, limit: int = 160) -> str:
    """A third-party message on one line, cut at a word boundary."""
    text = " ".join(str(err).split()) or type(err).__name__
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def _check_cleaned(wrapper: Any, path: Path) -> None:
    """``onnx.checker`` on the cleaned graph. qonnx's own ops live in domains a zoo file may not import (qonnx
    executes them by domain name), so those imports are added first; the clean-up moved the weights out of the
    graph inputs, which IR versions before 4 require, so the version is raised to 4 where it is lower."""
    import onnx

    model = wrapper.model
    imported = {o.domain for o in model.opset_import}
    for domain in sorted({n.domain for n in model.graph.node} - imported - {""}):
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    model.ir_version = max(model.ir_version, 4)
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # onnx ValidationError: a malformed graph
        raise ConfigError(f"{path}: not a valid ONNX graph after qonnx's clean-up ({type(err).__name__}: "
                          f"{_words(err)}); expected {_EXPECTED}") from None


def node_attribute(node: Any, name: str, default: Any) -> Any:
    """An ONNX node's attribute ``name`` (a string decoded, an integer, a float), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return a.s.decode() if a.type == a.STRING else a.f if a.type == a.FLOAT else a.i
    return default


def quant_scale_exponents(wrapper: Any, node: Any, where: str) -> np.ndarray:
    """The exponents e of a ``Quant`` node's scale 2^e; one-line ``ConfigError`` naming the node unless its scale is
    a constant power of two and its zero point a constant 0 (the only Quant that maps to fixed point)."""
    scale, zeropt = wrapper.get_initializer(node.input[1]), wrapper.get_initializer(node.input[2])
    if scale is None or zeropt is None:
        raise ConfigError(f"{where}: node {node.name!r} (Quant) has a scale or zero point computed at run time; "
                          "expected constants")
    exponents = np.log2(np.abs(np.asarray(scale, np.float64)))
    if np.any(exponents != np.round(exponents)) or np.any(np.asarray(zeropt) != 0):
        raise ConfigError(f"{where}: node {node.name!r} (Quant) has scale {np.asarray(scale).ravel()[:3]} and "
                          f"zero point {np.asarray(zeropt).ravel()[:3]}: not fixed point (expected power-of-two "
                          "scales and zero point 0), so no firmware reproduces it exactly")
    return exponents


def _check_power_of_two_scales(wrapper: Any, where: str) -> None:
    """hls4ml maps a Quant to fixed point only with a power-of-two scale and zero point 0."""
    for node in wrapper.graph.node:
        if node.op_type == "Quant":
            quant_scale_exponents(wrapper, node, where)


#: Ops that make a graph quantised: without one, the graph is float throughout.
_QUANTISERS = ("Quant", "BipolarQuant")
#: The name of the input quantiser fastml adds (kept out of qonnx's ``Quant_<n>`` names).
INPUT_QUANT = "fastml_input_quant"


def check_quantised_graph(wrapper: Any, where: str) -> None:
    """One-line ``ConfigError`` for a graph fastml cannot build exactly: no quantiser at all (a float export),
    a scale that is not a power of two, thresholds, or a float BatchNormalization, each named."""
    nodes = list(wrapper.graph.node)
    if not any(n.op_type in _QUANTISERS for n in nodes):
        ops = sorted({n.op_type for n in nodes})
        raise ConfigError(f"{where}: the graph has no Quant node (ops: {', '.join(ops[:8])}): a float model, which "
                          "no firmware reproduces exactly; export it with quantisers (QONNX from Brevitas or "
                          "QKeras), or bring the float model as model.kind: keras with quantize: true")
    _check_power_of_two_scales(wrapper, where)
    for node in nodes:
        if node.op_type == "MultiThreshold":
            raise ConfigError(f"{where}: node {node.name!r} (MultiThreshold) is a threshold activation, which "
                              "hls4ml's QONNX front end does not build; expected the graph as exported (Quant "
                              "nodes) before FINN's streamlining turned them into thresholds")
        if node.op_type == "BatchNormalization":
            gamma, var = (wrapper.get_initializer(node.input[i]) for i in (1, 4))
            eps = node_attribute(node, "epsilon", 1e-5)
            factor = ("" if gamma is None or var is None else
                      f" (scale gamma/sqrt(var+eps) = {float(np.ravel(gamma)[0] / np.sqrt(np.ravel(var)[0] + eps)):.6g}"
                      ", ...)")
            raise ConfigError(f"{where}: node {node.name!r} (BatchNormalization) is a float affine{factor} that qonnx "
                              "computes in float32 and hls4ml's front end with rounded fixed-point constants, so "
                              "the firmware would not reproduce it bit for bit; expected it folded into the weights "
                              "and quantisers before export")


def flatten_input(wrapper: Any, data_shape: tuple[int, ...]) -> bool:
    """Let a flat event feed a graph whose first op flattens its input (``Reshape`` to (batch, -1) or
    ``Flatten``): the graph then takes the flat shape and the op goes (the same numbers, as ONNX orders
    them row-major). True if the graph was changed."""
    inp = wrapper.graph.input[0].name
    shape = tuple(wrapper.get_tensor_shape(inp)[1:])
    consumers = wrapper.find_consumers(inp) or []
    if len(data_shape) != 1 or len(shape) < 2 or int(np.prod(shape)) != data_shape[0] or len(consumers) != 1:
        return False
    node = consumers[0]
    if node.op_type == "Reshape":
        target = wrapper.get_initializer(node.input[1])
        flat = target is not None and len(target) == 2 and target[1] in (-1, data_shape[0])
    else:
        flat = node.op_type == "Flatten" and node_attribute(node, "axis", 1) == 1
    if not flat:
        return False
    # the flattened tensor's readers read the input itself, which is now flat
    for reader in wrapper.find_consumers(node.output[0]) or []:
        for i, name in enumerate(reader.input):
            if name == node.output[0]:
                reader.input[i] = inp
    wrapper.graph.node.remove(node)
    wrapper.set_tensor_shape(inp, [1, data_shape[0]])
    return True


def add_float_edges(wrapper: Any, section: QONNXSection, x_train: np.ndarray, where: str,
                    quantise_input: bool = True) -> tuple[Any, list[dict[str, Any]]]:
    """A copy of ``wrapper`` with its float edges made explicit, and each choice (``FloatEdge.as_dict()``).

    An input no ``Quant`` reads gets one (``model.input_precision``; ROUND, as every Quant fastml builds), a real
    node, so qonnx's execution (the reference) and hls4ml's front end see the same quantiser. A final
    ``Softmax`` is dropped (the argmax is unchanged) unless ``model.keep_softmax``: qonnx computes it in float,
    hls4ml with tables, so no reference could include it exactly and the build is refused instead.
    ``quantise_input=False``: only the softmax is dropped (the float twin the report compares against, so that
    float and as-built scores differ by the quantisers alone, per-class AUC included).
    """
    import copy

    from onnx import TensorProto, helper
    from qonnx.transformation.infer_shapes import InferShapes

    model = copy.deepcopy(wrapper)
    edges: list[dict[str, Any]] = []
    out = model.graph.output[0].name
    last = model.find_producer(out)
    if last is not None and last.op_type == "Softmax":
        if section.keep_softmax:
            raise ConfigError(f"{where}: node {last.name!r} (Softmax) with model.keep_softmax: true: qonnx computes "
                              "the softmax in float, hls4ml with lookup tables, so the reference cannot include "
                              "the tables and no build is bit-exact; set keep_softmax: false (drops it, the argmax "
                              "is unchanged)")
        logits = last.input[0]
        producer = model.find_producer(logits)
        if producer is None or len(model.find_consumers(logits) or []) != 1:
            raise ConfigError(f"{where}: node {last.name!r} (Softmax) reads {logits!r}, which the graph also uses "
                              "elsewhere; expected a final Softmax on the last layer's output alone")
        producer.output[:] = [out if name == logits else name for name in producer.output]
        model.graph.node.remove(last)
        for info in list(model.graph.value_info):
            if info.name == logits:
                model.graph.value_info.remove(info)
        edges.append(FloatEdge(where=last.name, edge="output activation",
                               choice="Softmax dropped (argmax unchanged; model.keep_softmax: false)").as_dict())
    inp = model.graph.input[0].name
    readers = model.find_consumers(inp) or []
    if quantise_input and readers and not all(r.op_type in _QUANTISERS and r.input[0] == inp for r in readers):
        chosen, how = resolve_precision(section.input_precision, x_train, "model.input_precision")
        quantised = f"{inp}_quantised"
        consts = {"scale": np.float32(chosen.step), "zeropt": np.float32(0.0), "bitwidth": np.float32(chosen.width)}
        for key, value in consts.items():
            model.set_initializer(f"{INPUT_QUANT}_{key}", np.asarray(value, np.float32))
        node = helper.make_node("Quant", [inp, *(f"{INPUT_QUANT}_{k}" for k in consts)], [quantised],
                                name=INPUT_QUANT, domain="qonnx.custom_op.general", signed=chosen.k, narrow=0,
                                rounding_mode="ROUND")
        for reader in readers:
            reader.input[:] = [quantised if name == inp else name for name in reader.input]
        model.graph.node.insert(0, node)
        model.graph.value_info.append(helper.make_tensor_value_info(quantised, TensorProto.FLOAT,
                                                                    model.get_tensor_shape(inp)))
        edges.append(FloatEdge(where=readers[0].name, edge="input",
                               choice=f"{chosen} ({how}): Quant node {INPUT_QUANT!r} added on the float input, "
                                      "rounding half to even").as_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.transform(InferShapes()), edges


class QONNXModel(ModelKind):
    name = "qonnx"
    Section = QONNXSection
    layout = None
    backends = ("hls4ml", "rtl")
    backend_notes: ClassVar[dict[str, str]] = {"conifer": "conifer builds decision trees"}
    summary = ("a QONNX model (.onnx with Quant nodes), hls4ml's QONNX front end or alkaid Verilog, checked against "
               "qonnx execution")
    section: QONNXSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        return check_model_file(cfg, self.section, (".onnx",), "a QONNX model saved as .onnx")

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        return None  # checked against the graph's input when it is read

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedModel:
        path = model_path(cfg, self.section)
        where = str(path)
        published = load_qonnx(path)
        # what no firmware can reproduce is refused first, before the data's shape is compared
        check_quantised_graph(published, where)  # float graph, scales, thresholds, BatchNormalization
        shape = tuple(published.get_tensor_shape(published.graph.input[0].name)[1:])
        if shape != tuple(data.input_shape) and not flatten_input(published, tuple(data.input_shape)):
            check_input_shape(shape, tuple(data.input_shape), where)  # one line naming both shapes
        built, edges = add_float_edges(published, self.section, data.x_train, where)
        graph = QONNXGraph(built, path)
        check_outputs(tuple(graph.output_shape[1:]), data.n_classes, where)
        if self.check_layers is not None:  # the backend's own refusal (rtl: compiler and op types), before any run
            self.check_layers(graph, where)
        trained = loaded_model(self.name, graph, path, lambda x: execute(built, x), data.n_classes, calibrated=False,
                               extra={"imported_from": "QONNX (qonnx clean-up)",
                                      "reference": "qonnx execute_onnx" + (" with the added quantisers" if edges
                                                                             else ""),
                                      "float_edges": edges})
        # the graph as published (float input), less the dropped softmax: the float model the report compares with
        float_twin = add_float_edges(published, self.section, data.x_train, where, quantise_input=False)[0]
        trained.predict_float = (lambda x: execute(float_twin, x)) if edges else None
        return trained

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """The cleaned graph as built (``model.onnx``) and the file as given (``source_model.onnx``)."""
        import shutil

        trained.model.wrapper.save(str(model_dir / "model.onnx"))
        shutil.copyfile(trained.model.source, model_dir / "source_model.onnx")
        return [model_dir / "model.onnx", model_dir / "source_model.onnx"]
