"""What ``fastml export`` bundles of a conifer project, by conifer backend (``firmware.conifer_backend``).

conifer's output folder (the project's ``firmware/``) is the bundle's ``firmware/``.

- ``vhdl``: the VHDL (``firmware/firmware/*.vhd``, conifer's own testbench files included: ``synth.tcl`` removes
  them from synthesis by name, and fails where they are missing), ``firmware/tb/`` (vectors of the build's
  verification events, ``interface.json``, the self-checking ``BDTTop_tb.vhd``: ``testbench.py``) and conifer's
  Vivado script ``synth.tcl``; GHDL and Vivado commands. Left out: GHDL's compiled libraries (``*.cf``), logs, and
  ``SimulationInput.txt`` / ``SimulationOutput.txt`` with ``ghdl_compile.sh`` (the events and script of the last
  simulation conifer ran for the build's check: regenerable, and replaced by ``tb/``).
- ``xilinxhls``: the Vitis HLS project (``firmware/firmware/`` sources, ``<project>_test.cpp``, ``build_hls.tcl``,
  ``hls_parameters.tcl``, ``vivado_synth.tcl``, an empty ``tb_data/``); Vitis HLS and Vivado commands. fastml writes
  no vectors for it (the build compared conifer's C++ emulation of these sources bit for bit instead). Left out:
  ``bridge.cpp`` and the ``*.so`` (conifer's Python binding, compiled on the building machine), the Vitis HLS
  project folder and logs (regenerable).
- ``cpp``: a C++ emulation with no firmware: a one-line ``FastmlError`` naming what is exported.

Never bundled: conifer's ``<project>.json`` (its saved model, with the building machine's absolute ``output_dir``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
    element_table,
    ensure_testbench,
    feature_names,
    latency_lines,
    named_elements,
    read_source,
    stage_switches,
    tcl_settings,
    vectors_sentence,
)
from .._testbench import TB_DIR, ghdl_command, read_interface
from .testbench import TOP, VHDL_DIR

#: Where the testbench runs (default vector paths ``tb/*.hex``) and synth.tcl finds ``firmware/``: conifer's folder.
_RUN_DIR = "firmware"


def _vhdl_interface_lines(project_dir: Path, iface: dict[str, Any], conifer: str) -> list[str]:
    lat, clock = int(iface["latency_cycles"]), float(iface["clock_period_ns"])
    ports = {p["name"]: p for p in iface["ports"]}
    n_in, n_out = ports["X"]["elements"], ports["y"]["elements"]
    lines = [
        f"Top entity `{TOP}` of conifer's VHDL project (conifer {conifer}; VHDL-2008), "
        f"{clock_line(iface.get('part'), clock, f'firmware/{TB_DIR}/interface.json')} (the recipe's clock: the VHDL "
        "has no constraint of its own).",
        "",
        f"- **Latency: {lat} clocks** ({lat * clock:g} ns): an event on `X` with `X_vld` high at rising edge *n* has "
        f"its scores on `y`, with `y_vld` high, after rising edge *n* + {lat}. Counted from the VHDL (tree depth + 2, "
        "the adder stages of the sum, the normalisation register) and checked by the testbench; report.json's "
        "conifer estimate (below) is conifer's fitted model, not this count.",
        "- **II = 1**: a new event every clock.",
        "- No reset: `y_vld` starts low (initial values) and follows `X_vld` through the pipeline.",
        f"- Every feature and score is one `{iface['precision']}` (`signed`: value = integer × 2^-fraction bits).",
        "",
        "| port | direction | width | type | elements |",
        "|---|---|---|---|---|",
        *(f"| `{p['name']}` | {p['direction']} | {p['width']} | {p.get('type', 'std_logic')} | "
          f"{p.get('elements', '')} |" for p in iface["ports"]),
        "",
        f"`X` elements: bits of one `{TB_DIR}/inputs.hex` word (the features after fastml's scaling, "
        "`model/scaler.json` of the project):",
        "",
        *element_table(iface["inputs"], feature_names(project_dir, n_in)),
        "",
        f"`y` elements: bits of one `{TB_DIR}/expected.hex` word (a score per class):",
        "",
        *element_table(iface["outputs"], class_names(project_dir, n_out), "class"),
    ]
    return lines


def _vhdl_simulate_lines(iface: dict[str, Any]) -> list[str]:
    sources = " ".join(iface["sources"])
    return [
        f"`firmware/` is conifer's output folder and `firmware/{VHDL_DIR}/` its VHDL (`BDTTestbench.vhd`, "
        "`SimulationInput.vhd`, `SimulationOutput.vhd` and `TestUtil.vhd` are conifer's own testbench, which "
        f"`synth.tcl` leaves out of synthesis). " + vectors_sentence(iface["events"], TOP)
        + f": it streams one event a clock with `X_vld` high, compares `y` {iface['latency_cycles']} clocks later "
        "(`y_vld` must be high then, and low before) and ends with one `PASS` or `FAIL` line (FAIL exits non-zero). "
        f"Run it from `{_RUN_DIR}` (its default vector paths are `tb/*.hex`; the generics `INPUTS_FILE` / "
        "`EXPECTED_FILE` point elsewhere). Another VHDL-2008 simulator: compile `interface.json`'s `sources` in that "
        f"order and `tb/{TOP}_tb.vhd` into one library.",
        "",
        "```sh",
        f"cd {_RUN_DIR}",
        "# GHDL (VHDL-2008)",
        ghdl_command(TOP, f"{sources} tb/{TOP}_tb.vhd"),
        "# Vivado synthesis, where installed: conifer's script",
        "vivado -mode batch -source synth.tcl",
        "```",
    ]


def _vhdl(project_dir: Path, testbench: Callable[[Path, np.ndarray, np.ndarray], str],
          conifer: str) -> ExportContents:
    ensure_testbench(project_dir, testbench)
    firmware = project_dir / "firmware"
    iface = read_interface(firmware)
    return ExportContents(files=collect(firmware, (VHDL_DIR, TB_DIR, "synth.tcl")),
                          interface=_vhdl_interface_lines(project_dir, iface, conifer),
                          simulate=_vhdl_simulate_lines(iface), tools=("conifer",))


def _hls(project_dir: Path, conifer: str) -> ExportContents:
    firmware = project_dir / "firmware"
    tcl = firmware / "hls_parameters.tcl"
    settings = tcl_settings(tcl)
    top = settings.get("top", "")
    prj = settings.get("prj_name", top)
    # the definition Vitis HLS synthesises (conifer 1.11's header declares one argument more than it defines)
    prototype = c_prototype(firmware / VHDL_DIR / f"{top}.cpp", top)
    declared = c_prototype(firmware / VHDL_DIR / f"{top}.h", top)
    parameters = read_source(firmware / VHDL_DIR / "parameters.h", "conifer's types", "the project conifer writes")
    rows = c_arguments(prototype, parameters, lambda position, _: "in" if position == 0 else "out")
    report = load_report(project_dir)
    clock = clock_line(settings.get("part"), settings.get("clock_period"), f"{tcl} (set clock_period)")
    interface = [
        f"Top function `{top}` of conifer's Vitis HLS project (conifer {conifer}, xilinxhls), {clock} "
        "(`firmware/hls_parameters.tcl`).",
        "",
        "```cpp",
        *prototype.splitlines(),
        "```",
        "",
        *latency_lines(report, f"Vitis HLS schedules its own: `csynth_design` (below) reports it in "
                               f"`{prj}/solution1/syn/report/`, and `fastml synth` records it in report.json"),
        "- Each element is an `ap_fixed<W,I>` (W bits, I of them above the binary point, sign included): value = "
        "integer × 2^-(W-I).",
        "",
        *argument_table(rows),
    ]
    if len(rows) == 2 and all(isinstance(r["elements"], int) for r in rows):  # names index one array each
        interface += named_elements(f"`{rows[0]['name']}` elements (the features after fastml's scaling)",
                                    feature_names(project_dir, rows[0]["elements"]))
        interface += named_elements(f"`{rows[1]['name']}` elements (a score per class)",
                                    class_names(project_dir, rows[1]["elements"]))
    switches = stage_switches(firmware / "build_hls.tcl")
    stages = ", ".join(f"{k} {v}" for k, v in switches.items()) or "conifer's defaults"
    # conifer's testbench calls the top function as the header declares it: a definition with other arguments
    # leaves its C simulation unlinked (conifer 1.11's tree_scores), so the command switches csim off
    unlinked = declared.count(",") != prototype.count(",")
    simulate = [
        f"`firmware/` is conifer's output folder. fastml writes no vectors or self-checking testbench for conifer's "
        f"HLS projects (`firmware.conifer_backend: vhdl` projects have them): `tb_data/` is empty, and conifer's C "
        f"testbench `{prj}_test.cpp` then runs one all-zero event in `csim_design`. The build compared conifer's C++ "
        "emulation of these sources with fastml's fixed-point reference bit for bit (verification, above). The "
        "project needs Vitis HLS (its ap_types headers are not in it).",
        *(["", f"`firmware/{VHDL_DIR}/{top}.h` declares `{' '.join(declared.split())}` but `{top}.cpp` defines "
               f"`{' '.join(prototype.split())}`: the C "
               f"testbench, which calls the declared function, does not link, so the command below switches C "
               "simulation off (`csim=0`)."] if unlinked else []),
        "",
        "```sh",
        f"cd {_RUN_DIR}",
        f"# Vitis HLS, where installed: the stages switched on in build_hls.tcl ({stages}), or build_opt.tcl beside "
        "it; arguments override them",
        "vitis_hls -f build_hls.tcl" + (' "csim=0"' if unlinked else ""),
        "# Vitis 2025.1 or later: vitis-run passes no arguments (put the switches in build_opt.tcl)",
        "vitis-run --mode hls --tcl build_hls.tcl",
        "# Vivado synthesis of the C synthesis' VHDL",
        "vivado -mode batch -source vivado_synth.tcl",
        "```",
    ]
    parts = [VHDL_DIR, f"{prj}_test.cpp", *sorted(p.name for p in firmware.glob("*.tcl"))]
    # build_hls.tcl adds tb_data/ to the testbench: there even though empty
    return ExportContents(files=collect(firmware, parts, skip=lambda f: f.suffix in COMPILED_SUFFIXES),
                          interface=interface, simulate=simulate, dirs=("firmware/tb_data",), tools=("conifer",))


def export_contents(project_dir: Path, testbench: Callable[[Path, np.ndarray, np.ndarray], str]) -> ExportContents:
    """The conifer project's files, interface and commands for ``fastml export``; one-line ``FastmlError`` for a
    project with no firmware to hand over (``conifer_backend: cpp``)."""
    firmware = project_dir / "firmware"
    report = load_report(project_dir)
    conifer = report.versions.get("conifer", "?")
    if (firmware / VHDL_DIR / f"{TOP}.vhd").is_file():
        return _vhdl(project_dir, testbench, conifer)
    if (firmware / "build_hls.tcl").is_file() and (firmware / "hls_parameters.tcl").is_file():
        return _hls(project_dir, conifer)
    kind = report.firmware.get("conifer_backend", "(not in report.json)")
    raise FastmlError(f"export: {project_dir}: conifer_backend {kind!r} has no firmware to hand over (no "
                      f"{VHDL_DIR}/{TOP}.vhd, no build_hls.tcl in {firmware}); fastml export bundles conifer's vhdl "
                      "projects (VHDL, vectors, self-checking testbench) and xilinxhls projects (Vitis HLS): set "
                      "firmware.conifer_backend to one of them and rebuild")


__all__ = ["export_contents"]
