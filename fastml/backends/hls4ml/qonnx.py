"""hls4ml's QONNX front end: a cleaned QONNX graph (``model.kind qonnx``) to a Vitis project, compiled for
C-simulation and checked against qonnx's own execution."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigError, ToolError
from ...models.qonnx_model import QONNXGraph
from .. import FirmwareProject
from .convert import HLS4ML_STRATEGY

if TYPE_CHECKING:
    from ...models import TrainedModel
    from ...recipe import BuildConfig

#: Integer bits (with sign) of the firmware's input type: scaled features stay far below 2^23.
_INPUT_INT_BITS = 24


def convert_qonnx(graph: QONNXGraph, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
    """hls4ml's QONNX front end -> Vitis project in ``project_dir/firmware``, compiled for C-simulation."""
    import hls4ml

    fw = cfg.firmware
    out = project_dir / "firmware"
    timings: dict[str, float] = {}
    log = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(log):
        config = hls4ml.utils.config_from_onnx_model(graph.wrapper, granularity="name", backend="Vitis",
                                                     default_precision="fixed<16,6>")
        config["Model"].update({"ReuseFactor": fw.reuse_factor, "Strategy": HLS4ML_STRATEGY[fw.strategy]})
        # hls4ml first casts the float input to the input layer's type (truncating), then the input Quant
        # rounds half to even: a double rounding that moves values just above a tie onto it (measured: 20
        # of 1500 outputs differed with a 16-fraction-bit input). With f + 26 fraction bits every float32 near
        # a tie of the Quant's grid 2^-f is held exactly, so the cast is exact where it matters.
        name = graph.wrapper.graph.input[0].name
        config["LayerName"].setdefault(name, {})["Precision"] = {
            "result": f"fixed<{_INPUT_INT_BITS + graph.input_fraction_bits() + 26},{_INPUT_INT_BITS}>"}
        try:
            hls_model = hls4ml.converters.convert_from_onnx_model(
                graph.wrapper, output_dir=str(out), project_name=cfg.name.replace("-", "_").replace(".", "_"),
                backend="Vitis", io_type=fw.io_type, part=fw.part, clock_period=fw.clock_period_ns,
                hls_config=config)
        except Exception as err:  # hls4ml raises anything for an op its ONNX front end lacks
            why = " ".join(str(err).split())[:200] or type(err).__name__
            raise ConfigError(f"{graph.source}: hls4ml's QONNX front end cannot convert this graph "
                              f"({type(err).__name__}: {why})") from None
        timings["hls4ml_convert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            hls_model.compile()
        except Exception as err:  # hls4ml raises bare Exceptions with the compiler's output
            raise ToolError(f"hls4ml C-simulation compile failed in {out}: {str(err).splitlines()[0]}") from None
    timings["csim_compile"] = time.perf_counter() - t0
    (project_dir / "logs").mkdir(parents=True, exist_ok=True)
    (project_dir / "logs" / "hls4ml_convert.log").write_text(log.getvalue())
    n_out = int(np.prod(graph.output_shape[1:]))

    def csim(x: np.ndarray) -> np.ndarray:
        y = hls_model.predict(np.ascontiguousarray(np.asarray(x, np.float32).reshape(len(x), -1)))
        return np.asarray(y, np.float32).reshape(len(x), n_out)

    return FirmwareProject(
        backend="hls4ml", path=out, simulators={"csim": csim}, reference=trained.predict_quantized,
        reference_name="qonnx execute_onnx",
        info={"strategy": fw.strategy, "io_type": fw.io_type, "reuse_factor": fw.reuse_factor, "part": fw.part,
              "clock_period_ns": fw.clock_period_ns, "hls_backend": "Vitis", "front_end": "QONNX",
              "project_name": hls_model.config.get_project_name()},
        timings_s=timings, handle=hls_model)
