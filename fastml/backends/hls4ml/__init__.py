"""The ``hls4ml`` backend: a Keras (HGQ2, QKeras-rebuilt) network or a QONNX graph to a Vitis HLS project.

============================  ==================================================================
``convert``                   hls4ml's Keras front end, the project written and its C-simulation compiled
``qonnx``                     hls4ml's QONNX front end for ``model.kind qonnx`` graphs
``csim_cache``, ``csim_split``  fastml's compile of hls4ml's sources: flags, parallel units, content-hash cache
``diagnose``                  the project's C++ with per-layer trace hooks
``testbench``                 hls4ml's ``tb_data/`` of the verification events, a checking copy of its C testbench
``export``                    what ``fastml export`` bundles: the HLS project, testbench, interface, commands
============================  ==================================================================

Estimates: ``da4ml_estimate`` of the same network as da4ml RTL (hls4ml writes no Verilog before Vitis HLS).
Synthesis: hls4ml's ``build_prj.tcl`` through ``vitis_hls`` (or ``vitis-run``), stage switches in
``build_opt.tcl``; ``vsynth`` makes the script call Vivado itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._internal.da4ml import da4ml_estimate, da4ml_takes
from ..._internal.model_files import load_keras_model
from ..._internal.vendor import SynthStep, flow_script, hls_step, opt_tcl
from ...errors import FastmlError
from ...models.qonnx_model import QONNXGraph
from ...report import NOT_RUN, Report
from .. import Backend, ExportContents, FirmwareProject
from .convert import convert as convert_keras
from .diagnose import diagnose_hls4ml
from .export import export_contents
from .qonnx import convert_qonnx
from .testbench import TB_DATA, write_testbench

if TYPE_CHECKING:
    import numpy as np

    from ...models import TrainedModel
    from ...recipe import BuildConfig
    from ...verification.layers import Diagnosis


class Hls4mlBackend(Backend):
    name = "hls4ml"
    families = ("network",)
    diagnose_firmware = "C simulation of the project's sources with per-layer trace hooks"
    layer_tool = "hls4ml 1.3"

    def wrong_family(self, trained: TrainedModel, cfg: BuildConfig) -> str:
        return (f"the hls4ml backend builds neural networks, not model.kind {trained.kind!r} "
                "(use backend conifer for BDTs)")

    def takes_operation(self, op: Any) -> bool:
        """hls4ml 1.3's Keras 3 front end: its own handlers, else its da4ml fallback (``allow_da_fallback``)."""
        from hls4ml.converters.keras_v3._base import registry

        qualified = f"{type(op).__module__}.{type(op).__name__}"
        return qualified in registry or type(op).__name__ in registry or da4ml_takes(op)

    def convert(self, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
        if isinstance(trained.model, QONNXGraph):
            return convert_qonnx(trained.model, trained, cfg, project_dir)
        return convert_keras(trained, cfg, project_dir)

    def estimate(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                 log: Callable[[str], None]) -> None:
        super().estimate(project, trained, cfg, report, log)
        if "da4ml_estimate" in report.resources:
            return
        try:
            if not hasattr(trained.model, "layers"):  # e.g. a QONNX graph
                what = "an ONNX graph" if trained.kind == "qonnx" else f"a {type(trained.model).__name__}"
                raise FastmlError(f"da4ml traces Keras (HGQ2) models only; model.kind {trained.kind!r} gives {what}")
            resources, latency = da4ml_estimate(trained.model, cfg)
        except FastmlError as err:  # e.g. an imported model's rounding mode da4ml cannot trace: say why, go on
            report.checks["da4ml_estimate"] = f"{NOT_RUN}: {err}"
            log(f"da4ml estimate: {err}")
        else:
            report.resources["da4ml_estimate"] = resources
            report.set_latency(latency)

    def estimate_project(self, project_dir: Path, cfg: BuildConfig, report: Report, run_yosys: bool) -> dict[str, str]:
        notes: dict[str, str] = {}
        model_file = project_dir / "model" / "model.keras"  # the quantised model a build saved; never the float twin
        if not model_file.is_file():
            notes["da4ml_estimate"] = f"{NOT_RUN}: no model/model.keras in {project_dir}"
        else:
            model = load_keras_model(model_file)  # a corrupt file: one line naming it
            resources, latency = da4ml_estimate(model, cfg)
            report.resources["da4ml_estimate"] = resources
            report.set_latency(latency)
            notes["da4ml_estimate"] = "ok"
        notes["yosys"] = f"{NOT_RUN}: hls4ml writes C++, there is no Verilog without Vitis HLS (fastml synth)"
        return notes

    def diagnose(self, project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
        diagnose_hls4ml(project_dir, x, diag, y_saved)

    def testbench(self, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> str:
        firmware = project_dir / "firmware"
        tests = sorted(firmware.glob("*_test.cpp"))
        if len(tests) != 1:
            return f"{NOT_RUN}: expected one hls4ml <project>_test.cpp in {firmware}, found {len(tests)}"
        project = tests[0].name.removesuffix("_test.cpp")
        interface = write_testbench(firmware, project, x, reference)
        return (f"firmware/{TB_DATA}: {interface['events']} events for hls4ml's {project}_test.cpp; "
                f"firmware/{interface['checking_copy']} checks them")

    def export(self, project_dir: Path) -> ExportContents:
        return export_contents(project_dir, self.testbench)

    def synth_steps(self, project_dir: Path, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
        want = set(stages)
        tcl = flow_script(project_dir, "build_prj.tcl", self.name)
        opts = {"reset": False, "csim": "cosim" in want, "synth": True, "cosim": "cosim" in want,
                "validation": "cosim" in want, "export": "export" in want, "vsynth": "vsynth" in want,
                "fifo_opt": False}  # every stage needs C synthesis first
        (tcl.parent / "build_opt.tcl").write_text(opt_tcl(opts))
        return [hls_step(tcl, tools, " ".join(f"{k}={int(v)}" for k, v in opts.items()))]

    def synth_tools(self, stages: list[str]) -> set[str]:
        return {"vivado"} if "vsynth" in stages else set()  # build_prj.tcl calls `exec vivado` itself

    def owns(self, firmware_dir: Path) -> bool:
        return (firmware_dir / "hls4ml_config.yml").is_file()


__all__ = ["Hls4mlBackend"]
