"""Test vectors and self-checking testbenches of an rtl project, for simulators that are not fastml's.

``write_testbench(firmware_dir, x, reference)`` writes ``firmware/tb/``:

=====================  ======================================================================
``inputs.hex``         the verification events as the top's ``model_inp`` bus, one event a line
``expected.hex``       the ``model_out`` bus the firmware must produce for each, one a line
``interface.json``     ports, widths, per-element fixed-point formats, latency, clock, event count
``fastml_model_tb.v``  Verilog testbench (Icarus, verilator ``--binary``, a Verilog-2005 simulator with ``$fatal``)
``fastml_model_tb.vhd``  VHDL-2008 testbench (VHDL projects only; GHDL ``--std=08``)
=====================  ======================================================================

The bus layout is da4ml's (``da4ml.codegen.rtl``): the top module ``fastml_model`` packs element 0 of the
flattened input into the lowest bits, each element in its own minimal two's-complement (or unsigned)
width ``keep_negative + integers + fractional`` (``_minimal_kif`` of its quantisation interval); elements of
width 0 (constants) take no bits. The integer of an input element is ``floor(x * 2**fractional)`` wrapped to
its width — what da4ml's interface and its verilator binder feed the logic, and the same events the build
verified. The expected outputs come from da4ml's interpreter of the saved logic (``model/pipeline.json``), which
the build proved bit-exact with the quantised model; how many events differ from the build's reference
outputs is recorded (0 on a passing build), never assumed.

The testbenches stream one event per clock (II=1) and compare the output ``latency`` clocks later: the
pipeline registers its input on the rising edge ``e`` and its output on edge ``e + latency``. Both sample and
drive on the falling edge, count mismatches (``!==``/``/=``: X or Z bits are mismatches), print up to ten
of them and end with one ``PASS``/``FAIL`` line. They run with the working directory
``firmware/src/memfiles`` (da4ml's lookup tables are read from there by bare name, as in da4ml's own
binder), so their default vector paths are ``../../tb/*.hex``; ``+inputs=`` / ``+expected=`` (Verilog)
or the generics ``INPUTS_FILE`` / ``EXPECTED_FILE`` (VHDL) point elsewhere. The Verilog testbench's ``+events=K``
checks only the first K events (event-driven simulators take tens of ms per event of a large design); its vector
files may then hold just those K.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FastmlError
from .._testbench import (
    EXPECTED_FILE,
    INPUTS_FILE,
    INTERFACE_FILE,
    SHOWN_MISMATCHES,
    TB_DIR,
    VHDL_NEXT_WORD,
    Field,
    bus_width,
    fields_of,
    hex_bits,
    hex_lines,
    pack,
    quantise,
    read_hex,
    read_interface,
    to_values,
    unpack,
    vector_file,
    vhdl_verdict,
)
from .diagnose import _load_saved_logic, _run_logic


def _verilog_tb(top: str, n_events: int, latency: int, in_w: int, out_w: int, clock_ns: float) -> str:
    return f"""`timescale 1 ns / 1 ps
// Self-checking testbench of {top}, written by fastml: streams one event per clock (II=1) from
// {INPUTS_FILE}, compares model_out {latency} clocks later with {EXPECTED_FILE}, ends with one PASS/FAIL line
// (FAIL through $fatal: exit status 1). Verilog-2005 plus $fatal (iverilog -g2012). Run with the working
// directory firmware/src/memfiles (da4ml's lookup tables are read from there), or give the vector files
// with +inputs=PATH +expected=PATH. +events=K checks only the first K events (a quick run of a big design;
// the vector files may then hold just those K).
module {top}_tb;
    localparam integer N_EVENTS = {n_events};
    localparam integer LATENCY = {latency};  // clocks from the edge that takes an event to the one that outputs it
    localparam integer IN_W = {in_w};
    localparam integer OUT_W = {out_w};
    localparam real HALF_PERIOD_NS = {clock_ns / 2!r};

    reg clk = 1'b0;
    reg [IN_W-1:0] inputs [0:N_EVENTS-1];
    reg [OUT_W-1:0] expected [0:N_EVENTS-1];
    reg [IN_W-1:0] model_inp;
    wire [OUT_W-1:0] model_out;
    reg [8*1024-1:0] inputs_file;
    reg [8*1024-1:0] expected_file;
    integer n_run;  // events streamed and checked: N_EVENTS, or the first +events=K
    integer cycle;
    integer event_out;
    integer errors;

    {top} dut (.clk(clk), .model_inp(model_inp), .model_out(model_out));

    always #(HALF_PERIOD_NS) clk = ~clk;

    initial begin
        if (!$value$plusargs("inputs=%s", inputs_file)) inputs_file = "../../tb/{INPUTS_FILE}";
        if (!$value$plusargs("expected=%s", expected_file)) expected_file = "../../tb/{EXPECTED_FILE}";
        if (!$value$plusargs("events=%d", n_run)) n_run = N_EVENTS;
        if (n_run < 1 || n_run > N_EVENTS)
            $fatal(1, "FAIL: {top}: +events=%0d, the vector files hold 1 to %0d events", n_run, N_EVENTS);
        // only the events run: vector files cut to the first K then read without complaint
        $readmemh(inputs_file, inputs, 0, n_run - 1);
        $readmemh(expected_file, expected, 0, n_run - 1);
        errors = 0;
        model_inp = inputs[0];
        // Event `cycle` is taken on rising edge `cycle`; its output is registered on edge `cycle + LATENCY`.
        // Inputs change and outputs are read on the falling edge in between: no race with the design.
        for (cycle = 0; cycle < n_run + LATENCY; cycle = cycle + 1) begin
            @(posedge clk);
            @(negedge clk);
            if (cycle >= LATENCY) begin
                event_out = cycle - LATENCY;
                if (model_out !== expected[event_out]) begin
                    if (errors < {SHOWN_MISMATCHES})
                        $display("mismatch: event %0d: model_out %h, expected %h", event_out, model_out,
                                 expected[event_out]);
                    errors = errors + 1;
                end
            end
            model_inp = (cycle + 1 < n_run) ? inputs[cycle + 1] : {{IN_W{{1'b0}}}};
        end
        if (errors == 0)
            $display("PASS: {top}: %0d events, 0 mismatches (latency %0d clocks, II=1)", n_run, LATENCY);
        else
            // $fatal: a non-zero exit status for scripts (simulators decorate the line with file and time)
            $fatal(1, "FAIL: {top}: %0d of %0d events mismatch (latency %0d clocks, II=1)", errors, n_run,
                   LATENCY);
        $finish;
    end
endmodule
"""


def _vhdl_tb(top: str, n_events: int, latency: int, in_w: int, out_w: int, clock_ns: float) -> str:
    half_ps = round(clock_ns * 1000 / 2)
    in_hex, out_hex = hex_bits(in_w), hex_bits(out_w)
    return f"""-- Self-checking testbench of {top}, written by fastml: streams one event per clock (II=1) from
-- {INPUTS_FILE}, compares model_out {latency} clocks later with {EXPECTED_FILE}, ends with one PASS/FAIL line
-- (FAIL: exit status 1).
-- VHDL-2008. Run with the working directory firmware/src/memfiles (da4ml's lookup tables are read from
-- there), or set the generics INPUTS_FILE / EXPECTED_FILE.
library ieee;
use ieee.std_logic_1164.all;
use std.textio.all;

entity {top}_tb is
    generic (
        INPUTS_FILE : string := "../../tb/{INPUTS_FILE}";
        EXPECTED_FILE : string := "../../tb/{EXPECTED_FILE}"
    );
end entity;

architecture sim of {top}_tb is
    constant N_EVENTS : natural := {n_events};
    constant LATENCY : natural := {latency};  -- clocks from the edge that takes an event to the one that outputs it
    constant IN_W : natural := {in_w};
    constant OUT_W : natural := {out_w};
    constant HALF_PERIOD : time := {half_ps} ps;
    type in_array is array (0 to N_EVENTS - 1) of std_logic_vector(IN_W - 1 downto 0);
    type out_array is array (0 to N_EVENTS - 1) of std_logic_vector(OUT_W - 1 downto 0);

    signal clk : std_logic := '0';
    signal running : boolean := true;
    signal model_inp : std_logic_vector(IN_W - 1 downto 0) := (others => '0');
    signal model_out : std_logic_vector(OUT_W - 1 downto 0);

{VHDL_NEXT_WORD}begin
    dut : entity work.{top} port map (clk => clk, model_inp => model_inp, model_out => model_out);

    clk <= not clk after HALF_PERIOD when running;

    stimulus : process
        file fin : text open read_mode is INPUTS_FILE;
        file fexp : text open read_mode is EXPECTED_FILE;
        variable inputs : in_array;
        variable expected : out_array;
        variable errors : natural := 0;
        variable event_out : natural;
        variable status : integer := 0;
        variable l : line;
    begin
        for i in 0 to N_EVENTS - 1 loop
            next_word(fin, inputs(i), {in_hex});
            next_word(fexp, expected(i), {out_hex});
        end loop;
        model_inp <= inputs(0);
        -- Event `cycle` is taken on rising edge `cycle`; its output is registered on edge `cycle + LATENCY`.
        -- Inputs change and outputs are read on the falling edge in between: no race with the design.
        for cycle in 0 to N_EVENTS + LATENCY - 1 loop
            wait until rising_edge(clk);
            wait until falling_edge(clk);
            if cycle >= LATENCY then
                event_out := cycle - LATENCY;
                if model_out /= expected(event_out) then
                    if errors < {SHOWN_MISMATCHES} then
                        write(l, string'("mismatch: event ") & integer'image(event_out) & string'(": model_out ")
                              & to_hstring(model_out) & string'(", expected ") & to_hstring(expected(event_out)));
                        writeline(output, l);
                    end if;
                    errors := errors + 1;
                end if;
            end if;
            if cycle + 1 < N_EVENTS then
                model_inp <= inputs(cycle + 1);
            else
                model_inp <= (others => '0');
            end if;
        end loop;
{vhdl_verdict(top)}    end process;
end architecture;
"""


def cocotb_file(top: str) -> str:
    """File name of the cocotb test module (not ``test_*.py``: pytest would collect it)."""
    return f"cocotb_{top}.py"


def _cocotb_test(top: str, n_events: int, latency: int, clock_ns: float) -> str:
    period_ps = 2 * round(clock_ns * 1000 / 2)
    return f'''"""cocotb 2 test of {top}, written by fastml: the check of {top}_tb.v in Python.

Streams one event per clock (II=1) from {INPUTS_FILE}, compares model_out {latency} clocks later with
{EXPECTED_FILE} (X/Z bits count as mismatches), prints up to {SHOWN_MISMATCHES} mismatches and one PASS/FAIL line;
the cocotb test fails on any mismatch. Other vector files: plusargs +inputs=PATH +expected=PATH.

Run it (cocotb 2.x with Icarus Verilog, as fastml's tests do; SIM names another simulator cocotb drives):

    python {cocotb_file(top)} [BUILD_DIR]

from anywhere: it compiles ../src/*.v ../src/static/*.v with {top} as the top level, runs the simulation in
../src/memfiles (da4ml reads its lookup tables there by name) and exits non-zero on FAIL. BUILD_DIR (default
$TMPDIR/{top}_cocotb) holds the simulator's build and results.xml.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

TOP = "{top}"
N_EVENTS = {n_events}
LATENCY = {latency}  # clocks from the edge that takes an event to the one that outputs it
PERIOD_PS = {period_ps}
HERE = Path(__file__).resolve().parent


def read_hex(path: Path) -> list[int]:
    """Bus words of a vector file (``//`` header lines skipped)."""
    return [int(s, 16) for s in (ln.strip() for ln in path.read_text().splitlines()) if s and not s.startswith("//")]


@cocotb.test()
async def matches_expected(dut) -> None:
    inputs = read_hex(Path(cocotb.plusargs.get("inputs", HERE / "{INPUTS_FILE}")))
    expected = read_hex(Path(cocotb.plusargs.get("expected", HERE / "{EXPECTED_FILE}")))
    assert len(inputs) == len(expected) == N_EVENTS, "the vector files do not hold N_EVENTS events each"
    Clock(dut.clk, PERIOD_PS, unit="ps").start(start_high=False)
    errors = 0
    dut.model_inp.value = inputs[0]
    # Event `cycle` is taken on rising edge `cycle`; its output is registered on edge `cycle + LATENCY`.
    # Inputs change and outputs are read on the falling edge in between: no race with the design.
    for cycle in range(N_EVENTS + LATENCY):
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        if cycle >= LATENCY:
            event = cycle - LATENCY
            got = dut.model_out.value
            if not got.is_resolvable or got.to_unsigned() != expected[event]:
                if errors < {SHOWN_MISMATCHES}:
                    shown = f"{{got.to_unsigned():X}}" if got.is_resolvable else str(got)
                    print(f"mismatch: event {{event}}: model_out {{shown}}, expected {{expected[event]:X}}", flush=True)
                errors += 1
        dut.model_inp.value = inputs[cycle + 1] if cycle + 1 < N_EVENTS else 0
    if errors == 0:
        print(f"PASS: {{TOP}}: {{N_EVENTS}} events, 0 mismatches (latency {{LATENCY}} clocks, II=1)", flush=True)
    else:
        print(f"FAIL: {{TOP}}: {{errors}} of {{N_EVENTS}} events mismatch (latency {{LATENCY}} clocks, II=1)",
              flush=True)
    assert errors == 0, f"{{errors}} of {{N_EVENTS}} events mismatch"


def main() -> int:
    from cocotb_tools.runner import get_results, get_runner

    src = HERE.parent / "src"
    build_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.gettempdir()) / f"{{TOP}}_cocotb"
    build_dir = build_dir.resolve()
    runner = get_runner(os.environ.get("SIM", "icarus"))
    runner.build(sources=sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v")), hdl_toplevel=TOP,
                 build_dir=build_dir, timescale=("1ns", "1ps"), always=True)
    env = {{"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}}
    results = runner.test(test_module=Path(__file__).stem, hdl_toplevel=TOP, build_dir=build_dir,
                          test_dir=src / "memfiles", results_xml=str(build_dir / "results.xml"), extra_env=env)
    n_tests, n_failed = get_results(results)
    return 0 if n_tests == 1 and n_failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
'''

def write_testbench(firmware_dir: Path, x: np.ndarray, reference: np.ndarray | None = None) -> dict[str, Any]:
    """Write ``firmware_dir / "tb"`` for the events ``x`` (the build's verification events, scaled floats).

    Reads the project's own files (``metadata.json``, ``model/pipeline.json``, ``model/comb.json``), so it runs
    during a build and on a project built earlier alike. ``reference``: the build's reference outputs; the
    number of events whose expected bus differs from them is recorded as ``differs_from_reference``.
    Returns the interface description also written as ``tb/interface.json``.
    """
    from da4ml.cmvm.types import _minimal_kif

    try:
        meta = json.loads((firmware_dir / "metadata.json").read_text())
        pipe = _load_saved_logic(firmware_dir)
    except (OSError, ValueError, KeyError) as err:
        pipe = None
        why = str(err)
    else:
        why = "no model/pipeline.json"
    if pipe is None or "latency" not in meta:
        raise FastmlError(f"{firmware_dir}: cannot read the da4ml project for its testbench ({why}); expected "
                          "metadata.json with a latency and model/pipeline.json, as an rtl build writes them")
    top = str(meta.get("top", "fastml_model"))
    flavor = str(meta.get("flavor", "verilog"))
    latency = int(meta["latency"])
    clock_ns = float(meta.get("clock_period_ns", 5.0))
    in_fields = fields_of([tuple(_minimal_kif(q)) for q in pipe.inp_qint])
    out_fields = fields_of([tuple(_minimal_kif(q)) for q in pipe.out_qint])
    n_in, n_out = pipe.shape

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != n_in:
        raise FastmlError(f"{firmware_dir}: the verification events have {x.shape[1]} inputs, the logic takes {n_in}")
    in_ints = quantise(x, in_fields)
    # The expected outputs of exactly the integers the testbench drives (the quantised events).
    y = _run_logic(pipe, to_values(in_ints, in_fields, n_in))
    out_ints = quantise(y, out_fields)
    if not np.array_equal(to_values(out_ints, out_fields, n_out), y):
        raise FastmlError(f"{firmware_dir}: da4ml's outputs do not fit the output bus formats; testbench not written")
    differs: int | None = None
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).reshape(len(x), -1)
        differs = int(np.sum(np.any(ref != y, axis=1)))

    tb = firmware_dir / TB_DIR
    tb.mkdir(parents=True, exist_ok=True)
    in_w, out_w = bus_width(in_fields), bus_width(out_fields)
    n = len(x)
    (tb / INPUTS_FILE).write_text(vector_file(f"inputs of {top}", "model_inp", in_fields, in_ints, top))
    (tb / EXPECTED_FILE).write_text(vector_file(f"expected outputs of {top}, {latency} clocks after each input",
                                                "model_out", out_fields, out_ints, top))
    (tb / f"{top}_tb.v").write_text(_verilog_tb(top, n, latency, in_w, out_w, clock_ns))
    if flavor == "vhdl":
        (tb / f"{top}_tb.vhd").write_text(_vhdl_tb(top, n, latency, in_w, out_w, clock_ns))
    else:  # cocotb's test drives the top itself: written for the simulators it is run with here (Verilog)
        (tb / cocotb_file(top)).write_text(_cocotb_test(top, n, latency, clock_ns))
    interface = {
        "top": top, "flavor": flavor, "latency_cycles": latency, "ii": 1, "clock_period_ns": clock_ns,
        "part": meta.get("part"), "events": n, "differs_from_reference": differs,
        "ports": [{"name": "clk", "direction": "in", "width": 1},
                  {"name": "model_inp", "direction": "in", "width": in_w, "elements": n_in},
                  {"name": "model_out", "direction": "out", "width": out_w, "elements": n_out}],
        "inputs": [asdict(f) for f in in_fields], "outputs": [asdict(f) for f in out_fields],
    }
    (tb / INTERFACE_FILE).write_text(json.dumps(interface, indent=1) + "\n")
    return interface


__all__ = ["Field", "bus_width", "cocotb_file", "fields_of", "hex_lines", "pack", "quantise", "read_hex",
           "read_interface", "to_values", "unpack", "write_testbench"]
