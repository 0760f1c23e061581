"""The ``rtl`` backend: an HGQ2 network straight to Verilog / VHDL, pipelined for the clock.

Its compiler is ``firmware.compiler``: da4ml 0.5 (the default) or alkaid (da4ml's successor; it also traces
half-to-even rounding and saturation, so imported QKeras models and saturating inputs reach Verilog, and traces
QONNX graphs node by node: ``qonnx_trace``). The
resource and latency keys stay ``da4ml_estimate`` / ``da4ml`` (the cost-model family budgets and baselines
name); every figure carries ``compiler``, the compiler and version that produced it.

====================  ==========================================================================================
``convert``           da4ml or alkaid trace, pipeline and RTL; the emulator and verilator simulation
``emulator``          the traced logic compiled to integer C++ (millions of events per second)
``estimate``          da4ml's figures saved with the project, yosys on its Verilog; da4ml's cost per Keras layer
``diagnose``          da4ml's per-operation interpreter, per Keras layer
``testbench``         test vectors of the verification events and self-checking Verilog / VHDL testbenches
``alkaid_testbench``  the same for an alkaid project, read from its saved pipeline (``model/fsm.json.gz``)
``alkaid_diagnose``   ``diagnose`` for an alkaid project: alkaid's interpreter per Keras layer
``qonnx_trace``       a QONNX graph (``model.kind qonnx``) traced node by node into alkaid logic
``export``            what ``fastml export`` bundles: HDL, testbench, interface, simulator commands
====================  ==========================================================================================

Synthesis: da4ml's ``build_vivado_prj.tcl`` through Vivado (synthesis, place and route); stages do not apply.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._internal import alkaid
from ..._internal.da4ml import compiler_label, da4ml_takes, latency_cutoff_for, layer_costs
from ..._internal.da4ml import untraceable_quantiser as da4ml_untraceable
from ..._internal.vendor import SynthStep, flow_script
from ..._internal.yosys import yosys_into_report
from ...errors import ConfigError, FastmlError
from ...models.imported import operations
from ...models.qonnx_model import QONNXGraph
from ...report import NOT_RUN, Latency, Report, Resources
from .. import Backend, ExportContents, FirmwareProject, backend_names, get_backend
from .alkaid_diagnose import diagnose_alkaid
from .alkaid_testbench import built_by_alkaid, write_alkaid_testbench
from .convert import convert as convert_rtl
from .diagnose import diagnose_rtl
from .estimate import METADATA_FILE, rtl_metadata, rtl_yosys_resources
from .export import export_contents
from .qonnx_trace import check_qonnx_build
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

    def layer_checker(self, cfg: BuildConfig) -> Callable[[Any, str], None]:
        compiler = cfg.firmware.compiler

        def check(model: Any, where: str) -> None:
            check_compiler_layers(model, where, compiler)

        return check

    def convert(self, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
        return convert_rtl(trained, cfg, project_dir)

    def estimate(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                 log: Callable[[str], None]) -> None:
        super().estimate(project, trained, cfg, report, log)
        fw = cfg.firmware
        yosys_into_report(report, fw.yosys, lambda: rtl_yosys_resources(
            project.path, fw.part, log_path=project.path.parent / "logs" / "yosys.log"), log)

    def layer_costs(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig) -> dict[str, Any]:
        if cfg.firmware.compiler != "da4ml":  # the breakdown is da4ml's trace: it would describe other logic
            return {"not_run": f"not run: per-layer costs come from da4ml's trace; this project was compiled by "
                               f"{cfg.firmware.compiler}"}
        # the cutoff the project was pipelined with: the stages column then matches its pipeline (before retiming)
        cutoff = float(project.info.get("latency_cutoff") or latency_cutoff_for(cfg.firmware)[0])
        return layer_costs(trained.model, cutoff)

    def estimate_project(self, project_dir: Path, cfg: BuildConfig, report: Report, run_yosys: bool) -> dict[str, str]:
        fw = cfg.firmware
        notes: dict[str, str] = {}
        meta = rtl_metadata(project_dir / "firmware")
        clock = float(meta.get("clock_period_ns", fw.clock_period_ns))
        cycles = int(meta["latency"])
        label = str(meta.get("compiler", compiler_label()))  # a project built before the key: da4ml
        model_name = label.split()[0]
        report.resources["da4ml_estimate"] = Resources(
            lut=round(float(meta["cost"])), ff=int(meta["reg_bits"]), dsp=0, bram=0, compiler=label,
            note=f"{model_name} cost model (adder bits), not synthesis")
        report.set_latency(Latency(cycles=cycles, ns=cycles * clock, ii=1, source="da4ml", compiler=label))
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
        if built_by_alkaid(project_dir / "firmware"):
            diagnose_alkaid(project_dir, x, diag, y_saved)
            return
        diagnose_rtl(project_dir, x, diag)

    def synth_steps(self, project_dir: Path, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
        tcl = flow_script(project_dir, "build_vivado_prj.tcl", self.name)
        return [SynthStep("vivado", ["-mode", "batch", "-source", tcl.name], tcl.parent, "synth_vivado.log")]

    def testbench(self, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> str:
        firmware = project_dir / "firmware"
        writer = write_alkaid_testbench if built_by_alkaid(firmware) else write_testbench
        interface = writer(firmware, x, reference)
        return (f"firmware/{TB_DIR}: {interface['events']} events, {interface['flavor']} testbench, "
                f"{interface['differs_from_reference']} differ from the reference")

    def export(self, project_dir: Path) -> ExportContents:
        return export_contents(project_dir, self.testbench)

    def owns(self, firmware_dir: Path) -> bool:
        return (firmware_dir / METADATA_FILE).is_file()


def check_compiler_layers(model: Any, where: str, compiler: str) -> None:
    """One-line ``ConfigError`` naming the first layer or quantiser of ``model`` (a Keras model, or a QONNX graph:
    its first node) that ``compiler`` cannot build."""
    if isinstance(model, QONNXGraph):
        check_qonnx_build(model.wrapper, where, compiler)
        return
    if compiler == "alkaid":
        try:
            alkaid.version()
        except FastmlError as err:
            raise ConfigError(f"{where}: {err}") from None
        takes, why = alkaid.alkaid_takes, alkaid.untraceable_quantiser(model)
    else:
        takes, why = da4ml_takes, da4ml_untraceable(model)
    for op in operations(model):
        if not takes(op):
            able = [b for n in backend_names() if n != "rtl" and "network" in (b := get_backend(n)).families
                    and b.takes_operation(op)]
            hint = (f"; firmware.backend {able[0].name!r} ({able[0].layer_tool}) can build it" if able
                    else "; no fastml backend can build it")
            raise ConfigError(f"{where}: layer {op.name!r} ({type(op).__name__}) cannot be built by {compiler} "
                              f"(firmware.backend 'rtl', firmware.compiler {compiler!r}){hint}")
    if why:
        hint = ("; firmware.compiler: alkaid traces it" if compiler == "da4ml"
                and alkaid.untraceable_quantiser(model) is None else "")
        raise ConfigError(f"{where}: firmware.compiler {compiler!r} cannot build this model: {why}{hint}")


__all__ = ["RtlBackend", "check_compiler_layers"]
