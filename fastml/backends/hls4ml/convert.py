"""hls4ml backend: an HGQ2 Keras model becomes a Vitis HLS project, compiled for C-simulation.

The project is complete for a user who later runs Vitis HLS on it (``build_prj.tcl``), with test
bench data (``tb_data/``) taken from the verification events so that C/RTL co-simulation compares
against the same outputs fastml checked.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import ToolError
from .. import FirmwareProject
from .csim_cache import build_csim

if TYPE_CHECKING:
    from ...models import TrainedModel
    from ...recipe import BuildConfig

#: fastml's strategy names -> hls4ml's.
HLS4ML_STRATEGY = {"distributed_arithmetic": "distributed_arithmetic", "latency": "Latency"}


def hls_config(cfg: BuildConfig) -> dict[str, Any]:
    """The hls4ml configuration: precisions come from the HGQ2 quantisers, so the default is minimal."""
    fw = cfg.firmware
    return {"Model": {"Precision": "ap_fixed<1,0>", "ReuseFactor": fw.reuse_factor,
                      "Strategy": HLS4ML_STRATEGY[fw.strategy]}}


def convert(trained: TrainedModel, cfg: BuildConfig, project_dir: Path,
            tb_inputs: np.ndarray | None = None) -> FirmwareProject:
    """Write the hls4ml project into ``project_dir/firmware`` and compile its C-simulation.

    Guarantees on return: ``simulators["csim"]`` runs the compiled firmware library; the project
    holds ``build_prj.tcl`` for Vitis HLS. Raises ``ToolError`` if the C++ compilation fails.
    """
    import hls4ml

    fw = cfg.firmware
    out = project_dir / "firmware"
    extra: dict[str, Any] = {}
    if tb_inputs is not None:
        # hls4ml copies these into tb_data/ for the C/RTL co-simulation test bench.
        tb_dir = project_dir / "model"
        tb_dir.mkdir(parents=True, exist_ok=True)
        np.savetxt(tb_dir / "tb_input_features.dat", tb_inputs[:1000], fmt="%.10g")
        np.savetxt(tb_dir / "tb_output_predictions.dat", trained.predict_quantized(tb_inputs[:1000]), fmt="%.10g")
        extra = {"input_data_tb": str(tb_dir / "tb_input_features.dat"),
                 "output_data_tb": str(tb_dir / "tb_output_predictions.dat")}
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):  # hls4ml prints its whole layer list; keep it in the log instead
        hls_model = hls4ml.converters.convert_from_keras_model(
            trained.model, output_dir=str(out), project_name=cfg.name.replace("-", "_").replace(".", "_"),
            backend="Vitis", io_type=fw.io_type, part=fw.part, clock_period=fw.clock_period_ns,
            hls_config=hls_config(cfg),
            # weights/*.txt read at run time (hls4ml's default): compiled-in constants made g++ -O3 take ~4x the
            # CPU; fastml.csim_cache points WEIGHTS_DIR at the weights/ beside the library, wherever it is
            write_weights_txt=True, **extra,
        )
        timings["hls4ml_convert"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        hls_model.write()
    timings["hls4ml_write"] = time.perf_counter() - t0
    (project_dir / "logs").mkdir(parents=True, exist_ok=True)
    (project_dir / "logs" / "hls4ml_convert.log").write_text(log.getvalue())

    # hls4ml's generated sources, compiled by fastml (flags, parallel units, cache: fastml.csim_cache)
    # instead of build_lib.sh; the library lands where hls4ml's compile() would put it.
    project_name = hls_model.config.get_project_name()
    library = out / "firmware" / f"{project_name}-{hls_model.config.get_config_value('Stamp')}.so"
    build = build_csim(out, project_name, library)
    timings["csim_compile"] = build.compile_s
    weights_dir = library.parent / "weights"
    if not weights_dir.is_dir():
        # hls4ml's C-sim calls exit(1) on a missing weights file: that would end this Python process (a notebook
        # kernel), so say it here instead
        raise ToolError(f"hls4ml wrote no weights folder {weights_dir}; the C-simulation reads its weights there")
    lib = ctypes.CDLL(str(library))
    hls_model._top_function_lib = lib  # hls_model.predict (hls4ml's per-event loop) keeps working on the handle

    n_in = int(np.prod(trained.model.input_shape[1:]))
    n_out = int(np.prod(trained.model.output_shape[1:]))
    batch = lib.fastml_predict_float
    batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
    batch.restype = None

    def csim(x: np.ndarray) -> np.ndarray:
        """hls4ml's ``<project>_float`` bridge on every event, looped in C (one call per batch)."""
        xf = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        if xf.shape[1] != n_in:
            raise ToolError(f"the C-simulation takes {n_in} inputs per event, got {xf.shape[1]}")
        y = np.zeros((len(xf), n_out), dtype=np.float32)
        batch(xf.ctypes.data, y.ctypes.data, len(xf), n_in, n_out)
        return y

    return FirmwareProject(
        backend="hls4ml", path=out, simulators={"csim": csim}, reference=trained.predict_quantized,
        info={"strategy": fw.strategy, "io_type": fw.io_type, "reuse_factor": fw.reuse_factor, "part": fw.part,
              "clock_period_ns": fw.clock_period_ns, "hls_backend": "Vitis", "project_name": project_name,
              "csim_compiler": build.compiler, "csim_flags": " ".join(build.flags),
              "csim_cache": ("hit" if build.cache_hit else "miss") if build.cache_dir else "off",
              "csim_key": build.key, "csim_units": build.units, "csim_units_note": build.units_note},
        timings_s=timings, handle=hls_model,
    )
