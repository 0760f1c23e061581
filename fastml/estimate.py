"""Estimation stage: latency and resources without vendor tools, from whatever the backend can give.

Sources, each labelled in the report:

- ``da4ml_estimate`` / ``da4ml``: da4ml's own cost model of the traced network (LUTs ~ adder bits,
  FFs = pipeline register bits, no DSP/BRAM since distributed arithmetic uses neither). For the rtl
  backend the latency (``source: "da4ml"``) is exact: it is the depth of the generated pipeline, and
  the verilator simulation reads outputs exactly that many cycles after the inputs
  (``fastml._internal.da4ml`` says how the pipeline's cutoff follows the clock).
- ``yosys``: ``synth_xilinx`` on the generated Verilog (``fastml._internal.yosys``); cell counts by type
  are kept in the report as extra fields.

Which sources a project has is its backend's business (``Backend.estimate`` during a build,
``Backend.estimate_project`` afterwards); this stage runs it and records what could not run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._internal.compat import moved_name
from .backends import FirmwareProject, get_backend
from .errors import FastmlError
from .recipe import project_config
from .report import NOT_RUN, Report, load_report, write_report

if TYPE_CHECKING:
    from .models import TrainedModel
    from .recipe import BuildConfig


def estimate_build(project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
                   log: Callable[[str], None]) -> None:
    """Fill a build's latency/resources (and per-layer costs, ``report.layers``) from its backend and the open
    tools; a tool that cannot run says why."""
    backend = get_backend(cfg.firmware.backend)
    backend.estimate(project, trained, cfg, report, log)
    t0 = time.perf_counter()
    try:
        report.layers = backend.layer_costs(project, trained, cfg)
    except FastmlError as err:  # e.g. a layer da4ml cannot trace layer by layer: the page says so, the build goes on
        report.layers = {"not_run": f"{NOT_RUN}: {err}"}
        log(f"per-layer costs: {err}")
    report.layers["wall_s"] = round(time.perf_counter() - t0, 3)


def estimate_project(project_dir: Path, cfg: BuildConfig | None = None, run_yosys: bool = True) -> Report:
    """Re-run estimation on a built project folder and write its report back.

    rtl backend: da4ml figures from ``firmware/metadata.json`` (resources ``da4ml_estimate``, exact
    latency ``da4ml``) and, if ``run_yosys``, ``yosys`` cell counts. hls4ml backend: ``da4ml_estimate``
    of the saved Keras model (``model/model.keras``). Anything that cannot run is recorded in
    ``report.firmware["estimates"]`` as ``"not run: <why>"``; nothing is reported as measured that was not.
    """
    project_dir = Path(project_dir)
    report = load_report(project_dir)
    cfg = cfg if cfg is not None else project_config(project_dir)
    t0 = time.perf_counter()
    notes = get_backend(report.backend).estimate_project(project_dir, cfg, report, run_yosys)
    report.firmware = {**report.firmware, "estimates": notes}
    report.timings_s["estimate"] = round(time.perf_counter() - t0, 2)
    write_report(report, project_dir)
    return report


#: Names this module held in fastml 0.1, now in the modules that own them (kept for one release).
_MOVED = {
    "NS_PER_DELAY_UNIT": "fastml._internal.da4ml", "latency_cutoff_for": "fastml._internal.da4ml",
    "trace_keras": "fastml._internal.da4ml", "untraceable_quantiser": "fastml._internal.da4ml",
    "pipeline": "fastml._internal.da4ml", "pipeline_figures": "fastml._internal.da4ml",
    "da4ml_estimate": "fastml._internal.da4ml",
    "yosys_family": "fastml._internal.yosys", "resources_from_cells": "fastml._internal.yosys",
    "yosys_resources": "fastml._internal.yosys", "yosys_version": "fastml._internal.yosys",
    "RTL_TOP": "fastml.backends.rtl.estimate", "METADATA_FILE": "fastml.backends.rtl.estimate",
    "rtl_metadata": "fastml.backends.rtl.estimate", "rtl_verilog_sources": "fastml.backends.rtl.estimate",
    "rtl_yosys_resources": "fastml.backends.rtl.estimate",
    "conifer_vhdl_yosys_resources": "fastml.backends.conifer.estimate",
}


def __getattr__(name: str) -> Any:
    return moved_name(__name__, _MOVED, name)


__all__ = ["estimate_build", "estimate_project"]
