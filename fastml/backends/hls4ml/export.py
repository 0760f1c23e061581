"""What ``fastml export`` bundles of an hls4ml project: the Vitis HLS project as hls4ml wrote it, with the build's
verification events in ``tb_data/`` and fastml's checking copy of hls4ml's C testbench; the top function's interface
(read from the project: ``firmware/<project>.h``, ``firmware/defines.h``, ``project.tcl``) and the commands that run
the checking copy (g++) and Vitis HLS.

hls4ml's output folder (the project's ``firmware/``) is the bundle's ``firmware/``: the C++ sources with hls4ml's
copies of ``ap_types`` and ``nnet_utils`` (``firmware/firmware/``), ``<project>_test.cpp``, ``tb_data/`` (the two
``.dat`` files the testbench reads), ``tb/`` (``<project>_check.cpp``, ``interface.json``) and the Tcl scripts
(``build_prj.tcl``, ``build_opt.tcl``, ``project.tcl``, ``vivado_synth.tcl``). Left out, and why:

- ``*.so`` / ``*.o``: the C simulation fastml compiled on the building machine, for its own checks; g++ rebuilds it;
- ``<project>_bridge.cpp``, ``build_lib.sh``: hls4ml's Python binding (``compile``/``predict``), fastml's checks only;
- ``keras_model.keras``: the model hls4ml's Python side read (the project's ``model/model.keras`` is the build's own);
- ``hls4ml_config.yml``: hls4ml's settings with the building machine's absolute paths (what an integrator needs of
  it, part, clock, I/O type and shapes, is in ``project.tcl``, the sources and the README);
- ``<project>_prj/``, ``tb_data/*.log``, Vivado reports and logs: what Vitis HLS, Vivado or a testbench run wrote
  (large, and made again by the same commands).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ...errors import FastmlError
from ...report import load_report
from .. import ExportContents
from .._export import (
    COMPILED_SUFFIXES,
    argument_table,
    c_arguments,
    c_prototype,
    class_names,
    clock_line,
    collect,
    ensure_testbench,
    feature_names,
    latency_lines,
    named_elements,
    read_source,
    stage_switches,
    tcl_settings,
)
from .._testbench import TB_DIR, read_interface
from .testbench import INPUT_DAT, OUTPUT_DAT, TB_DATA, gxx_command

#: hls4ml's configuration (not bundled: absolute paths), read for the I/O type and which arguments are inputs.
_CONFIG = "hls4ml_config.yml"


class _AnyTagLoader(yaml.SafeLoader):
    """Safe YAML that reads hls4ml's ``!keras_model '<path>'`` (and any other local tag) as its plain value."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, _suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None))


def _hls4ml_config(firmware: Path) -> dict[str, Any]:
    """hls4ml's ``hls4ml_config.yml`` ({} when unreadable: the README then leaves out what only it says)."""
    try:
        doc = yaml.load((firmware / _CONFIG).read_text(), Loader=_AnyTagLoader)  # a SafeLoader: no Python objects
    except (OSError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def interface_lines(project_dir: Path, project: str) -> list[str]:
    """The README's interface section: top function, arguments with their element counts and types, latency, II,
    clock and part, as the project's own files say them (and ``report.json`` for latency and II)."""
    firmware = project_dir / "firmware"
    report = load_report(project_dir)
    config = _hls4ml_config(firmware)
    tcl = firmware / "project.tcl"
    settings = tcl_settings(tcl)
    prototype = c_prototype(firmware / "firmware" / f"{project}.h", project)
    defines = read_source(firmware / "firmware" / "defines.h", "hls4ml's types", "the project hls4ml writes")
    # hls4ml declares the inputs, then the outputs (then any BRAM weights): its config names both
    inputs, outputs = config.get("InputShapes") or {}, config.get("OutputShapes") or {}
    rows = c_arguments(prototype, defines, lambda _, name: "in" if name in inputs else "out" if name in outputs
                       else "(weights)", {**inputs, **outputs})
    try:
        pragmas = re.findall(r"#pragma HLS (?:INTERFACE|PIPELINE|DATAFLOW)\b[^\n]*",
                             (firmware / "firmware" / f"{project}.cpp").read_text())
    except OSError:
        pragmas = []
    uncertainty = f", clock uncertainty {settings['clock_uncertainty']}" if "clock_uncertainty" in settings else ""
    io_type = f", {config['IOType']}" if config.get("IOType") else ""
    clock = clock_line(settings.get("part"), settings.get("clock_period"), f"{tcl} (set clock_period)")
    lines = [
        f"Top function `{project}` of hls4ml's Vitis HLS project (hls4ml {report.versions.get('hls4ml', '?')}"
        f"{io_type}), {clock}{uncertainty} (`firmware/project.tcl`).",
        "",
        "```cpp",
        *prototype.splitlines(),
        "```",
        "",
        *latency_lines(report, f"Vitis HLS schedules its own: `csynth_design` (below) reports it in "
                               f"`{project}_prj/solution1/syn/report/{project}_csynth.rpt`, and `fastml synth` "
                               "records it in report.json"),
    ]
    if pragmas:
        lines.append(f"- Ports as Vitis HLS makes them from `firmware/firmware/{project}.cpp`: "
                     + ", ".join(f"`{p.strip()}`" for p in pragmas) + ".")
    lines += ["- Each element is an `ap_fixed<W,I>` (W bits, I of them above the binary point, sign included), "
              "`ap_ufixed` when unsigned: value = integer × 2^-(W-I).", "", *argument_table(rows)]
    ins = [r for r in rows if r["direction"] == "in"]
    outs = [r for r in rows if r["direction"] == "out"]
    counts = [r["elements"] for r in ins + outs]
    if len(ins) == 1 and len(outs) == 1 and all(isinstance(n, int) for n in counts):  # names index one array each
        lines += named_elements(f"`{ins[0]['name']}` elements (the model's inputs after fastml's scaling, "
                                "`model/scaler.json` of the project)", feature_names(project_dir, ins[0]["elements"]))
        lines += named_elements(f"`{outs[0]['name']}` elements (a score per class; the largest is the prediction)",
                                class_names(project_dir, outs[0]["elements"]))
    return lines


def simulate_lines(firmware: Path, iface: dict[str, Any]) -> list[str]:
    """The g++ command of the checking copy and the Vitis HLS commands, run from the bundle's ``firmware/``."""
    project = iface["project"]
    switches = stage_switches(firmware / "build_opt.tcl")
    stages = ", ".join(f"{k} {v}" for k, v in switches.items()) or "hls4ml's defaults"
    return [
        f"`firmware/` is hls4ml's output folder. `firmware/{TB_DATA}/` holds what hls4ml's C testbench "
        f"`firmware/{project}_test.cpp` (the one Vitis HLS `csim_design` and `cosim_design` run) reads: `{INPUT_DAT}` "
        f"({iface['events']} events the build verified bit for bit, one a line: the float32 values its C simulation "
        f"was given) and `{OUTPUT_DAT}` (the build's reference outputs for them). hls4ml's testbench writes its "
        f"outputs to `{TB_DATA}/csim_results.log` and compares nothing; `firmware/{iface['checking_copy']}` is the "
        "same file comparing every output with the expected value (as float32, as the build's bit-exact check did) "
        "and ending with one `PASS` or `FAIL` line (FAIL, or fewer events read than expected, exits 1). From "
        "`firmware/`:",
        "",
        "```sh",
        "cd firmware",
        "# g++ (C++17), no Xilinx tools needed: hls4ml's copy of the ap_types headers is in firmware/ap_types",
        gxx_command(project, f"/tmp/{project}_check"),
        f"# Vitis HLS, where installed: build_prj.tcl runs the stages build_opt.tcl switches on ({stages})",
        "vitis_hls -f build_prj.tcl",
        "# Vitis 2025.1 or later: the same script through vitis-run",
        "vitis-run --mode hls --tcl build_prj.tcl",
        "```",
        "",
        f"Vivado synthesis of the C synthesis' Verilog: `vivado -mode batch -source vivado_synth.tcl` (what `vsynth 1` "
        f"in build_opt.tcl makes build_prj.tcl run). Vitis HLS writes its project into `firmware/{project}_prj/`.",
    ]


def export_contents(project_dir: Path, testbench: Callable[[Path, np.ndarray, np.ndarray], str]) -> ExportContents:
    """The hls4ml project's files, interface and commands for ``fastml export`` (``testbench``: the backend's, for a
    project built before fastml wrote one)."""
    firmware = project_dir / "firmware"
    if not (firmware / "project.tcl").is_file() or not any(firmware.glob("*_test.cpp")):
        raise FastmlError(f"export: {firmware}: no hls4ml project (project.tcl, <project>_test.cpp); expected the "
                          "folder `fastml build` writes with firmware.backend hls4ml (rebuild the project)")
    ensure_testbench(project_dir, testbench)
    iface = read_interface(firmware)
    project = str(iface["project"])
    parts = ["firmware", f"{project}_test.cpp", TB_DIR, f"{TB_DATA}/{INPUT_DAT}", f"{TB_DATA}/{OUTPUT_DAT}",
             *sorted(p.name for p in firmware.glob("*.tcl"))]
    files = collect(firmware, parts, skip=lambda f: f.suffix in COMPILED_SUFFIXES)
    # build_prj.tcl adds firmware/weights to the testbench, and the g++ command reads it: there even when empty
    dirs = ("firmware/firmware/weights",) if (firmware / "firmware" / "weights").is_dir() else ()
    return ExportContents(files=files, interface=interface_lines(project_dir, project),
                          simulate=simulate_lines(firmware, iface), dirs=dirs, tools=("hls4ml", "da4ml"))


__all__ = ["export_contents", "interface_lines", "simulate_lines"]
