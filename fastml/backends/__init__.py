"""Conversion stage: a trained model becomes a firmware project, and everything about that project.

A backend is one object (a ``Backend`` subclass) in one subpackage, found by its ``firmware.backend``
name through ``get_backend`` — as hls4ml finds its backends. It owns the whole life of its projects:

=================  ==========================================================================
``check_layers``   before anything trains or compiles: every layer of a Keras model is one it can build
``convert``        write and compile the project; return a ``FirmwareProject`` with simulators
``estimate``       latency / resources during a build (``estimate_project``: again, later)
``layer_costs``    where the resources go: each layer's (or tree's) cost, for ``report.layers``
``diagnose``       per-layer comparison of the firmware with its reference
``synth_steps``    the vendor-tool invocations of ``fastml synth`` (Vitis HLS, Vivado)
``testbench``      test vectors and a self-checking HDL testbench of the verification events
``export``         what ``fastml export`` bundles for an integrator: files, interface, simulator commands
=================  ==========================================================================

Built in: ``hls4ml`` (``fastml.backends.hls4ml``), ``rtl`` (``fastml.backends.rtl``, da4ml Verilog/VHDL),
``conifer`` (``fastml.backends.conifer``). Another package adds one through the ``fastml.backends`` entry
point (``fastml._internal.plugins``). No module outside a backend's subpackage branches on a backend's
name. Subpackages import their tools (hls4ml, da4ml, conifer) inside functions, so a user of one backend
neither pays for nor needs the others'.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .._internal import plugins
from .._internal.vendor import SynthStep
from ..errors import ConfigError, FastmlError
from ..models.imported import operations
from ..report import NOT_RUN, Latency, Report, Resources
from ..types import Simulator

if TYPE_CHECKING:
    import numpy as np

    from ..models import TrainedModel
    from ..recipe import BuildConfig
    from ..verification.layers import Diagnosis


@dataclass
class ExportContents:
    """What a backend puts into ``fastml export``'s bundle (``fastml.export`` adds README, report, checksums).

    ``files``: path inside the bundle (POSIX, relative) -> file on disk; ``interface`` and ``simulate``:
    Markdown lines for the README's interface section (ports, widths, fixed-point types, latency, II) and
    its simulator commands, run from the extracted bundle; ``dirs``: folders the bundle holds even when empty
    (a simulator's working directory); ``tools``: the packages whose versions made the files (keys of
    ``report.versions``), named in the README's first lines.
    """

    files: dict[str, Path]
    interface: list[str]
    simulate: list[str]
    dirs: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()


@dataclass
class FirmwareProject:
    """A written, compiled firmware project.

    Guarantees: ``path`` exists and holds the backend's sources; every entry of ``simulators``
    (level name: csim | emulator | rtl_sim) is ready to call; ``reference`` computes the outputs the
    firmware must reproduce exactly (the quantised model, or a fixed-point reference for BDTs); a
    level the backend could not run is named in ``not_run`` with the reason, never silently dropped.
    """

    backend: str
    path: Path
    simulators: dict[str, Simulator]
    reference: Simulator
    reference_name: str = "quantized model"
    latency: Latency | None = None
    resources: dict[str, Resources] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)  # level -> why it could not run (reported "not run")
    handle: Any = None  # the backend's own object (hls4ml ModelGraph, da4ml RTLModel, conifer model)


class Backend(ABC):
    """One firmware backend: what it builds, how, and what it can say about its projects afterwards.

    Subclasses set ``name`` (the ``firmware.backend`` value), ``families`` (the model families it takes:
    ``"network"``, ``"trees"``) and implement ``convert``; every other step has a default that reports
    "not run" with the reason, so a new backend is useful from its first method on.
    """

    name: ClassVar[str]
    families: ClassVar[tuple[Literal["network", "trees"], ...]] = ("network",)
    #: The converter named in messages about layers (``"hls4ml 1.3"``); empty for a backend of no networks.
    layer_tool: ClassVar[str] = ""
    #: What ``fastml diagnose`` compares per layer, in words (its report's "firmware" line).
    diagnose_firmware: ClassVar[str] = ""

    def check_family(self, trained: TrainedModel, cfg: BuildConfig) -> None:
        """``ConfigError`` (one line) when this backend cannot build ``trained``'s model family."""
        if trained.family not in self.families:
            raise ConfigError(self.wrong_family(trained, cfg))

    def wrong_family(self, trained: TrainedModel, cfg: BuildConfig) -> str:
        return (f"firmware.backend {self.name!r} builds {' or '.join(self.families)} models, "
                f"got model.kind {trained.kind!r}")

    def takes_operation(self, op: Any) -> bool:
        """Whether this backend's converter builds the Keras layer/operation ``op``."""
        return False

    def check_layers(self, model: Any, where: str) -> None:
        """One-line ``ConfigError`` naming the first layer of ``model`` this backend cannot build (and a backend
        that can), before anything is trained on it or compiled."""
        if "network" not in self.families:
            networks = [n for n in backend_names() if "network" in get_backend(n).families]
            raise ConfigError(f"{where}: firmware.backend {self.name!r} does not build neural networks; expected "
                              f"one of: {', '.join(networks)}")
        if not hasattr(model, "layers"):  # a graph (QONNX), not Keras layers: its converter names what it refuses
            return
        for op in operations(model):
            if self.takes_operation(op):
                continue
            others = [get_backend(n) for n in backend_names() if n != self.name]
            able = [b for b in others if "network" in b.families and b.takes_operation(op)]
            hint = (f"; firmware.backend {able[0].name!r} ({able[0].layer_tool}) can build it" if able
                    else "; no fastml backend can build it")
            raise ConfigError(f"{where}: layer {op.name!r} ({type(op).__name__}) cannot be built by "
                              f"{self.layer_tool} (firmware.backend {self.name!r}){hint}")

    def layer_checker(self, cfg: BuildConfig) -> Callable[[Any, str], None]:
        """``check_layers`` for ``cfg``'s firmware settings (a backend whose converter ``cfg`` selects overrides it)."""
        return self.check_layers

    @abstractmethod
    def convert(self, trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
        """Write the project under ``project_dir / "firmware"`` and compile its simulations."""

    def estimate(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                 log: Callable[[str], None]) -> None:
        """Fill ``report``'s latency and resources during a build (the convert step's own figures by default).

        A tool that cannot run puts ``"not run: <why>"`` into ``report.checks``; nothing is made up.
        """
        report.resources.update(project.resources)
        if project.latency is not None:
            report.set_latency(project.latency)

    def estimate_project(self, project_dir: Path, cfg: BuildConfig, report: Report, run_yosys: bool) -> dict[str, str]:
        """Re-run the estimates of a built project into ``report``; returns ``{source: "ok" | "not run: why"}``."""
        return {"da4ml_estimate": f"{NOT_RUN}: backend {self.name} is not a da4ml network",
                "yosys": f"{NOT_RUN}: backend {self.name} has no Verilog to synthesise here"}

    def layer_costs(self, project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig) -> dict[str, Any]:
        """Each layer's (or tree's) cost for ``report.layers`` (schema in ``fastml.report``), during a build.

        ``{"not_run": "not run: <why>"}`` where the backend cannot say; raises ``FastmlError`` where it could but
        failed (the build records that as not run, with the reason).
        """
        return {"not_run": f"{NOT_RUN}: backend {self.name!r} gives no per-layer costs yet"}

    def diagnose(self, project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
        """Compare the project's firmware with its reference layer by layer on ``x``, filling ``diag``; ``y_saved``
        are the build's reference outputs for ``x`` where the events are the saved verification events."""
        diag.not_run = f"backend {self.name!r} has no per-layer diagnosis"

    def synth_steps(self, project_dir: Path, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
        """The vendor-tool invocations of ``fastml synth`` for ``stages``; ``FastmlError`` if there is no flow."""
        raise FastmlError(f"backend {self.name!r}: fastml synth has no vendor flow for it")

    def synth_tools(self, stages: list[str]) -> set[str]:
        """Tools the flow calls by itself, beyond its steps' own (``find_vendor_tools`` keys)."""
        return set()

    def testbench(self, project_dir: Path, x: np.ndarray, reference: np.ndarray) -> str:
        """Write test vectors of the verification events ``x`` (and expected outputs; ``reference`` is the build's
        reference output, to cross-check) with a self-checking testbench under ``project_dir / "firmware"``.

        Returns what it wrote in words, or ``"not run: <why>"``. Runs in the build's save stage (the events
        are known only after conversion) and from ``export`` on a project built without it.
        """
        return f"{NOT_RUN}: backend {self.name!r} writes no testbench yet"

    def export(self, project_dir: Path) -> ExportContents:
        """The integrator's files of a built project; ``FastmlError`` (one line) where the backend has none."""
        raise FastmlError(f"export: backend {self.name!r} hands fastml export no files (its Backend.export is not "
                          f"written); the built-in rtl, hls4ml and conifer backends have one. The project is under "
                          f"{project_dir}")

    def owns(self, firmware_dir: Path) -> bool:
        """Whether ``firmware_dir`` looks like this backend's output (for a project without ``report.json``)."""
        return False


@cache
def get_backend(name: str) -> Backend:
    """The backend registered as ``name`` (built in, or through the ``fastml.backends`` entry point)."""
    if name not in plugins.names(plugins.BACKENDS):
        raise FastmlError(f"unknown firmware backend {name!r}; expected one of: "
                          f"{', '.join(plugins.names(plugins.BACKENDS))}")
    backend = plugins.load(plugins.BACKENDS, name)()
    if not isinstance(backend, Backend):
        raise FastmlError(f"firmware backend {name!r} ({type(backend).__qualname__}) is not a fastml.backends.Backend")
    return backend


def backend_names() -> tuple[str, ...]:
    return plugins.names(plugins.BACKENDS)


def convert(trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
    """Write and compile ``cfg.firmware.backend``'s project for ``trained`` under ``project_dir``."""
    backend = get_backend(cfg.firmware.backend)
    backend.check_family(trained, cfg)
    return backend.convert(trained, cfg, project_dir)


def layer_check(cfg: BuildConfig) -> Callable[[Any, str], None]:
    """The recipe's backend's ``check_layers``: what ``fastml.models.train`` runs on a model it loads or rebuilds."""
    return get_backend(cfg.firmware.backend).layer_checker(cfg)


__all__ = ["Backend", "ExportContents", "FirmwareProject", "Simulator", "backend_names", "convert", "get_backend",
           "layer_check"]
