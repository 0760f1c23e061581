"""The ``rtl`` backend: an HGQ2 network straight to da4ml Verilog / VHDL, pipelined for the clock.

=============  ==========================================================================
``convert``    da4ml trace, pipeline and RTL; the emulator and verilator simulation
``emulator``   the traced logic compiled to integer C++ (millions of events per second)
``estimate``   da4ml's figures saved with the project, yosys on its Verilog; da4ml's cost per Keras layer
``diagnose``   da4ml's per-operation interpreter, per Keras layer
``testbench``  test vectors of the verification events and self-checking Verilog / VHDL testbenches
``export``     what ``fastml export`` bundles: HDL, testbench, interface, simulator commands
=============  ==========================================================================

Synthesis: da4ml's ``build_vivado_prj.tcl`` through Vivado (synthesis, place and route); stages do not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._internal.da4ml import da4ml_takes, latency_cutoff_for, layer_costs
from ..._internal.vendor import SynthStep, flow_script
from ..._internal.yosys import yosys_into_report
from ...report import NOT_RUN, Latency, Report, Resources
from .. import Backend, ExportContents, FirmwareProject
from .convert import convert as convert_rtl
from .diagnose import diagnose_rtl
from .estimate import METADATA_FILE, rtl_metadata, rtl_yosys_resources
from .export import export_contents
from .testbench import TB_DIR, write_testbench

if TYPE_CHECKING:
    import numpy as np

    from ...models import TrainedModel
    from ...recipe import BuildConfig
    from ...verification.layers import Diagnosis


class RtlBackend(Backend):
    name = "rtl"
    families = ("network",)
    diagnose_firmware = "da4ml per-operation interpreter (per layer) + the project's saved logic (output)"
    layer_tool = "da4ml (rtl)"

    def wrong_family(self, trained: TrainedModel, cfg: BuildConfig) -> str:
        return f"firmware.backend 'rtl' builds HGQ2 networks, got model.kind {trained.kind!r}"

    def takes_operation(self, op: Any) -> bool:
        return da4ml_takes(op)

    def convert(self, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
        return convert_rtl(trained, cfg, project_dir)

    def estimate(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                 log: Callable[[str], None]) -> None:
        super().estimate(project, trained, cfg, report, log)
        fw = cfg.firmware
        yosys_into_report(report, fw.yosys, lambda: rtl_yosys_resources(
            project.path, fw.part, log_path=project.path.parent / "logs" / "yosys.log"), log)

    def layer_costs(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig) -> dict[str, Any]:
        # the cutoff the project was pipelined with: the stages column then matches its pipeline (before retiming)
        cutoff = float(project.info.get("latency_cutoff") or latency_cutoff_for(cfg.firmware)[0])
        return layer_costs(trained.model, cutoff)

    def estimate_project(self, project_dir: Path, cfg: BuildConfig, report: Report, run_yosys: bool) -> dict[str, str]:
        fw = cfg.firmware
        notes: dict[str, str] = {}
        meta = rtl_metadata(project_dir / "firmware")
        clock = float(meta.get("clock_period_ns", fw.clock_period_ns))
        cycles = int(meta["latency"])
        report.resources["da4ml_estimate"] = Resources(
            lut=round(float(meta["cost"])), ff=int(meta["reg_bits"]), dsp=0, bram=0,
            note="da4ml cost model (adder bits), not synthesis")
        report.set_latency(Latency(cycles=cycles, ns=cycles * clock, ii=1, source="da4ml"))
        notes["da4ml_estimate"] = "ok"
        if run_yosys:
            report.resources["yosys"] = rtl_yosys_resources(project_dir / "firmware", str(meta.get("part", fw.part)),
                                                            log_path=project_dir / "logs" / "yosys.log")
            notes["yosys"] = "ok"
        elif "yosys" in report.resources:
            notes["yosys"] = "kept from an earlier run (--no-yosys)"
        else:
            notes["yosys"] = f"{NOT_RUN}: --no-yosys"
        return notes

    def diagnose(self, project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
        diagnose_rtl(project_dir, x, diag)

    def synth_steps(self, project_dir: Path, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
        tcl = flow_script(project_dir, "build_vivado_prj.tcl", self.name)
        return [SynthStep("vivado", ["-mode", "batch", "-source", tcl.name], tcl.parent, "synth_vivado.log")]

    def testbench(self, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> str:
        interface = write_testbench(project_dir / "firmware", x, reference)
        return (f"firmware/{TB_DIR}: {interface['events']} events, {interface['flavor']} testbench, "
                f"{interface['differs_from_reference']} differ from the reference")

    def export(self, project_dir: Path) -> ExportContents:
        return export_contents(project_dir)

    def owns(self, firmware_dir: Path) -> bool:
        return (firmware_dir / METADATA_FILE).is_file()


__all__ = ["RtlBackend"]
