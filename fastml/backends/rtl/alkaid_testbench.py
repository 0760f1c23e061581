"""``firmware/tb/`` of an rtl project compiled by alkaid: the same files and testbenches as ``testbench`` writes for
da4ml projects, read from alkaid's own saved project.

What alkaid saves (``alkaid.codegen.rtl.rtl_model.RTLModel.write``), and what is read here:

=========================  ==================================================================================
``model/fsm.json.gz``      the pipeline as alkaid's ``FSM``: its input and output ``Signal`` s carry each
                           element's ``Precision`` (signed, integers without sign, fractional) — the bit layout
                           of the top module's ports — and their schedules (II, output offset)
``model/comb.json.gz``     the combinational logic the RTL is written from (ternary adders fused): its C++
                           interpreter gives the expected outputs; the build verified it bit-exact
``metadata.json``          ``latency`` (clocks), ``clock_period_ns``, ``flavor``, ``top`` and ``compiler``
=========================  ==================================================================================

The bus layout of alkaid's top ``fastml_model`` (``src/fastml_model.v``, ``alkaid.codegen.rtl.verilog.fsm``) is
da4ml's: element 0 in the lowest bits, each in its own ``signed + integers + fractional`` bits, width-0 elements
take no bits. (``fastml_model_wrapper`` pads every element to one common format: alkaid's verilator binder drives
that one; the testbench drives the top itself, as for da4ml projects.) alkaid's RTL has no lookup-table files, so
the working directory ``firmware/src/memfiles`` the testbenches share with da4ml projects only anchors the default
vector paths ``../../tb/*.hex``; it is created empty.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FastmlError
from .._testbench import vector_file
from .estimate import rtl_metadata
from .testbench import (
    EXPECTED_FILE,
    INPUTS_FILE,
    INTERFACE_FILE,
    TB_DIR,
    Field,
    _verilog_tb,
    _vhdl_tb,
    bus_width,
    fields_of,
    quantise,
    to_values,
)

#: alkaid's saved pipeline and logic, under ``firmware/``.
FSM_FILE = "model/fsm.json.gz"
COMB_FILE = "model/comb.json.gz"
#: The testbenches' working directory (da4ml projects read lookup tables there; see the module docstring).
RUN_DIR = "src/memfiles"


def built_by_alkaid(firmware_dir: Path) -> bool:
    """Whether ``firmware_dir`` (an rtl project's ``firmware/``) was compiled by alkaid (its ``metadata.json``)."""
    try:
        return str(rtl_metadata(firmware_dir).get("compiler", "")).startswith("alkaid")
    except (FastmlError, ValueError):
        return False


def _port_fields(signal: Any) -> list[Field]:
    return fields_of([(int(bool(p.signed)), int(p.integers), int(p.fractional)) for p in signal.precisions])


def _load(firmware_dir: Path) -> tuple[dict[str, Any], Any, Any]:
    """metadata, alkaid ``FSM`` and ``CombLogic`` of a project, or a one-line ``FastmlError`` naming what is missing."""
    from alkaid.stateful import FSM
    from alkaid.types import CombLogic

    try:
        meta = json.loads((firmware_dir / "metadata.json").read_text())
        fsm = FSM.load(firmware_dir / FSM_FILE)
        comb = CombLogic.load(firmware_dir / COMB_FILE)
    except (OSError, ValueError, KeyError, TypeError) as err:
        why = " ".join(str(err).split())[:200]
        raise FastmlError(f"{firmware_dir}: cannot read the alkaid project for its testbench ({why}); expected "
                          f"metadata.json, {FSM_FILE} and {COMB_FILE}, as an rtl build with firmware.compiler "
                          "alkaid writes them") from None
    if "latency" not in meta:
        raise FastmlError(f"{firmware_dir}/metadata.json: no latency; an alkaid pipeline registered for a clock "
                          "has one (rebuild the project)")
    if len(fsm.inp_signals) != 1 or len(fsm.out_signals) != 1:
        raise FastmlError(f"{firmware_dir}: the alkaid pipeline has {len(fsm.inp_signals)} input and "
                          f"{len(fsm.out_signals)} output ports; the testbench drives one model_inp and one model_out")
    periods = {s.schedule.period if s.schedule is not None else None for s in fsm.inp_signals + fsm.out_signals}
    if periods != {1}:
        raise FastmlError(f"{firmware_dir}: the alkaid pipeline's ports are scheduled with periods "
                          f"{sorted(map(str, periods))}; the testbench streams one event per clock (II=1)")
    return meta, fsm, comb


def write_alkaid_testbench(firmware_dir: Path, x: np.ndarray, reference: np.ndarray | None = None) -> dict[str, Any]:
    """``testbench.write_testbench`` for an alkaid project: ``firmware_dir / "tb"`` for the events ``x``.

    Returns the interface written as ``tb/interface.json`` (``compiler`` added). The expected outputs are alkaid's
    interpreter on exactly the integers the testbench drives; ``differs_from_reference`` counts the events where
    they differ from ``reference`` (0 on a passing build), never assumed.
    """
    meta, fsm, comb = _load(firmware_dir)
    top = str(meta.get("top", meta.get("top_module", "fastml_model")))
    flavor = str(meta.get("flavor", "verilog"))
    latency = int(meta["latency"])
    clock_ns = float(meta.get("clock_period_ns", meta.get("clock_period", 5.0)))
    (inp,), (out,) = fsm.inp_signals, fsm.out_signals
    in_fields, out_fields = _port_fields(inp), _port_fields(out)
    n_in, n_out = comb.shape
    if (inp.size, out.size) != (n_in, n_out):
        raise FastmlError(f"{firmware_dir}: {FSM_FILE} has {inp.size} -> {out.size} elements, {COMB_FILE} "
                          f"{n_in} -> {n_out}: the saved pipeline and logic are not one project's")

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != n_in:
        raise FastmlError(f"{firmware_dir}: the verification events have {x.shape[1]} inputs, the logic takes {n_in}")
    in_ints = quantise(x, in_fields)
    y = np.asarray(comb.predict(to_values(in_ints, in_fields, n_in), n_threads=1), np.float64).reshape(len(x), -1)
    out_ints = quantise(y, out_fields)
    if not np.array_equal(to_values(out_ints, out_fields, n_out), y):
        raise FastmlError(f"{firmware_dir}: alkaid's outputs do not fit the output port's formats; testbench not "
                          "written")
    differs: int | None = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).reshape(len(x), -1)
        differs = int(np.sum(np.any(ref != y, axis=1)))

    tb = firmware_dir / TB_DIR
    tb.mkdir(parents=True, exist_ok=True)
    (firmware_dir / RUN_DIR).mkdir(parents=True, exist_ok=True)
    in_w, out_w = bus_width(in_fields), bus_width(out_fields)
    n = len(x)
    (tb / INPUTS_FILE).write_text(vector_file(f"inputs of {top}", "model_inp", in_fields, in_ints, top))
    (tb / EXPECTED_FILE).write_text(vector_file(f"expected outputs of {top}, {latency} clocks after each input",
                                                "model_out", out_fields, out_ints, top))
    # the shared testbenches say why they run in memfiles for da4ml; alkaid's RTL reads no files there
    why_dir = ("(da4ml's lookup tables are read from there)", "(alkaid's RTL reads no files; the paths are relative)")
    (tb / f"{top}_tb.v").write_text(_verilog_tb(top, n, latency, in_w, out_w, clock_ns).replace(*why_dir))
    if flavor == "vhdl":
        vhdl_why = ("(da4ml's lookup tables are read from\n-- there)", "(alkaid's RTL reads no files; the paths\n-- "
                    "are relative)")
        (tb / f"{top}_tb.vhd").write_text(_vhdl_tb(top, n, latency, in_w, out_w, clock_ns).replace(*vhdl_why))
    interface = {
        "top": top, "flavor": flavor, "compiler": meta.get("compiler"), "latency_cycles": latency, "ii": 1,
        "clock_period_ns": clock_ns, "part": meta.get("part", meta.get("part_name")), "events": n,
        "differs_from_reference": differs,
        "ports": [{"name": "clk", "direction": "in", "width": 1},
                  {"name": "model_inp", "direction": "in", "width": in_w, "elements": n_in},
                  {"name": "model_out", "direction": "out", "width": out_w, "elements": n_out}],
        "inputs": [asdict(f) for f in in_fields], "outputs": [asdict(f) for f in out_fields],
    }
    (tb / INTERFACE_FILE).write_text(json.dumps(interface, indent=1) + "\n")
    return interface


__all__ = ["COMB_FILE", "FSM_FILE", "built_by_alkaid", "write_alkaid_testbench"]
