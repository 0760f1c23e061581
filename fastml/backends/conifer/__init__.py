"""The ``conifer`` backend: a boosted decision tree ensemble to a conifer HLS (``xilinxhls``), ``vhdl`` or
``cpp`` project, bit-exact against fastml's NumPy fixed-point reference.

=============  ==========================================================================
``convert``    precision search, conifer project, its emulation compiled
``reference``  the ensemble evaluated in ``ap_fixed`` arithmetic, as conifer's firmware does
``estimate``   yosys on the VHDL project (through ``ghdl synth``)
``testbench``  VHDL projects: test vectors of the verification events and a self-checking VHDL testbench
``export``     what ``fastml export`` bundles: VHDL + testbench, or the Vitis HLS project; interface, commands
=============  ==========================================================================

Synthesis: ``build_hls.tcl`` (HLS tool, then ``vivado_synth.tcl`` for ``vsynth``) or, for VHDL, ``synth.tcl``
through Vivado. Per-tree diagnosis is not run: conifer 1.11's emulations return only the summed scores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..._internal.vendor import SynthStep, flow_script, hls_step, opt_tcl
from ..._internal.yosys import yosys_into_report
from ...report import NOT_RUN, Report
from .. import Backend, ExportContents, FirmwareProject
from .convert import convert as convert_trees
from .estimate import conifer_vhdl_yosys_resources
from .export import export_contents
from .testbench import TB_DIR, TOP, VHDL_DIR, write_testbench

if TYPE_CHECKING:
    import numpy as np

    from ...models import TrainedModel
    from ...recipe import BuildConfig
    from ...verification.layers import Diagnosis


class ConiferBackend(Backend):
    name = "conifer"
    families = ("trees",)
    diagnose_firmware = "conifer emulation"

    def wrong_family(self, trained: TrainedModel, cfg: BuildConfig) -> str:
        return (f"{cfg.source_path}: firmware.backend 'conifer' builds tree ensembles (model.kind bdt), "
                f"got model.kind {trained.kind!r}")

    def convert(self, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
        return convert_trees(trained, cfg, project_dir)

    def estimate(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                 log: Callable[[str], None]) -> None:
        super().estimate(project, trained, cfg, report, log)
        fw = cfg.firmware
        if fw.conifer_backend == "vhdl":  # yosys needs HDL; the HLS and C++ projects have none before Vitis HLS
            yosys_into_report(report, fw.yosys, lambda: conifer_vhdl_yosys_resources(
                project.path, fw.part, log_path=project.path.parent / "logs" / "yosys.log"), log)

    def diagnose(self, project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
        diag.not_run = ("conifer 1.11's emulations return only the summed scores (decision_function(trees=True) is "
                        "ignored by its cpp and xilinxhls writers), so per-tree values cannot be compared")
        diag.reference = "fixed-point reference (saved y_ref)"

    def testbench(self, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> str:
        firmware = project_dir / "firmware"
        if not (firmware / VHDL_DIR / f"{TOP}.vhd").is_file():
            return (f"{NOT_RUN}: vectors and a self-checking testbench are written for conifer's VHDL projects "
                    "(firmware.conifer_backend: vhdl); an HLS or C++ project has no RTL before the vendor tools")
        interface = write_testbench(firmware, x, reference)
        return f"firmware/{TB_DIR}: {interface['events']} events, vhdl testbench of {TOP}"

    def export(self, project_dir: Path) -> ExportContents:
        return export_contents(project_dir, self.testbench)

    def synth_steps(self, project_dir: Path, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
        firmware = project_dir / "firmware"
        if not (firmware.is_dir() and any(firmware.rglob("build_hls.tcl"))):
            tcl = flow_script(project_dir, "synth.tcl", self.name)  # conifer's vhdl backend
            return [SynthStep("vivado", ["-mode", "batch", "-source", tcl.name], tcl.parent, "synth_vivado.log")]
        want = set(stages)
        tcl = flow_script(project_dir, "build_hls.tcl", self.name)
        opts = {"reset": False, "csim": False, "synth": True, "cosim": "cosim" in want, "export": "export" in want}
        (tcl.parent / "build_opt.tcl").write_text(opt_tcl(opts))
        steps = [hls_step(tcl, tools, " ".join(f"{k}={int(v)}" for k, v in opts.items()))]
        if "vsynth" in want:
            steps.append(SynthStep("vivado", ["-mode", "batch", "-source", "vivado_synth.tcl"], tcl.parent,
                                   "synth_vivado.log"))
        return steps


__all__ = ["ConiferBackend"]
