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
or the generics ``INPUTS_FILE`` / ``EXPECTED_FILE`` (VHDL) point elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import FastmlError
from .diagnose import _load_saved_logic, _run_logic

TB_DIR = "tb"
INTERFACE_FILE = "interface.json"
INPUTS_FILE = "inputs.hex"
EXPECTED_FILE = "expected.hex"
#: Mismatches a testbench prints before it only counts.
_SHOWN_MISMATCHES = 10


@dataclass(frozen=True)
class Field:
    """One element of a bus: its bits ``[lsb + width - 1 : lsb]`` and fixed-point format.

    ``value = (two's-complement integer if signed else unsigned integer) * 2**-fractional``; ``integers`` counts
    the bits above the binary point without the sign (it may be negative: a small value with a long fraction).
    """

    index: int
    lsb: int
    width: int
    signed: bool
    integers: int
    fractional: int

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    @property
    def ap_type(self) -> str:
        """The Vitis HLS spelling: ``ap_fixed<W, I>`` (I counts the sign) or ``ap_ufixed<W, I>``."""
        kind = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{kind}<{self.width},{self.width - self.fractional}>"


def fields_of(kifs: Sequence[tuple[int, int, int]]) -> list[Field]:
    """Bus layout of elements with (keep_negative, integers, fractional) each, element 0 lowest; width-0
    elements are dropped, as da4ml's top drops them."""
    fields: list[Field] = []
    lsb = 0
    for index, (k, i, f) in enumerate(kifs):
        width = int(k) + int(i) + int(f)
        if width <= 0:
            continue
        fields.append(Field(index=index, lsb=lsb, width=width, signed=bool(k), integers=int(i), fractional=int(f)))
        lsb += width
    return fields


def bus_width(fields: Sequence[Field]) -> int:
    return fields[-1].msb + 1 if fields else 0


def quantise(values: np.ndarray, fields: Sequence[Field]) -> np.ndarray:
    """Integers ``floor(value * 2**fractional)`` of each field's element, wrapped into its width (two's complement
    when signed): what the hardware sees of a float input, and the exact integer of an output value.

    ``values``: (events, elements) floats, all elements (width-0 ones included). Returns (events, len(fields))
    Python ints (object array: buses wider than 64 bits are common).
    """
    out = np.empty((values.shape[0], len(fields)), dtype=object)
    for col, fd in enumerate(fields):
        scaled = np.floor(np.asarray(values[:, fd.index], dtype=np.float64) * 2.0 ** fd.fractional)
        modulus = 1 << fd.width
        half = modulus >> 1
        if fd.width <= 52 and np.all(np.abs(scaled) < 2.0**52):
            # exact in float64: the vectorised path (a build writes 10 000 events x hundreds of elements)
            wrapped = np.mod(scaled, float(modulus))
            if fd.signed:
                wrapped = np.where(wrapped >= half, wrapped - modulus, wrapped)
            out[:, col] = [int(v) for v in wrapped]
            continue
        for row, v in enumerate(scaled):
            n = int(v) % modulus
            out[row, col] = n - modulus if fd.signed and n >= half else n
    return out


def pack(ints: np.ndarray, fields: Sequence[Field]) -> list[int]:
    """One unsigned bus word per event from per-field integers (signed ones as two's complement)."""
    words = []
    for row in ints:
        word = 0
        for n, fd in zip(row, fields, strict=True):
            word |= (int(n) & ((1 << fd.width) - 1)) << fd.lsb
        words.append(word)
    return words


def unpack(words: Sequence[int], fields: Sequence[Field]) -> np.ndarray:
    """Per-field integers (signed ones negative where the sign bit is set) of bus words; inverse of ``pack``."""
    out = np.empty((len(words), len(fields)), dtype=object)
    for row, word in enumerate(words):
        for col, fd in enumerate(fields):
            n = (word >> fd.lsb) & ((1 << fd.width) - 1)
            out[row, col] = n - (1 << fd.width) if fd.signed and n >> (fd.width - 1) else n
    return out


def to_values(ints: np.ndarray, fields: Sequence[Field], n_elements: int) -> np.ndarray:
    """Floats of per-field integers, all ``n_elements`` wide (width-0 elements are 0)."""
    values = np.zeros((ints.shape[0], n_elements), dtype=np.float64)
    for col, fd in enumerate(fields):
        values[:, fd.index] = np.asarray(ints[:, col], dtype=np.float64) * 2.0 ** -fd.fractional
    return values


def hex_lines(words: Sequence[int], width: int) -> list[str]:
    digits = max(1, math.ceil(width / 4))
    return [format(w, f"0{digits}X") for w in words]


def read_hex(path: Path) -> list[int]:
    """Bus words of a vector file (``//`` header lines skipped)."""
    return [int(ln, 16) for ln in (s.strip() for s in path.read_text().splitlines()) if ln and not ln.startswith("//")]


def _header(what: str, port: str, fields: Sequence[Field], n_events: int, top: str) -> list[str]:
    width = bus_width(fields)
    lines = [f"// fastml test vectors: {what}",
             f"// {n_events} events, one per line: {top}.{port} ({width} bits) as {math.ceil(width / 4)} hex "
             "digits, most significant first",
             "// element 0 in the lowest bits; value = integer * 2^-fraction (two's complement when signed)",
             "// element  bits  type  (signed, integer bits without sign, fraction bits)"]
    lines += [f"// {fd.index} [{fd.msb}:{fd.lsb}] {fd.ap_type} ({int(fd.signed)},{fd.integers},{fd.fractional})"
              for fd in fields]
    return lines


def _verilog_tb(top: str, n_events: int, latency: int, in_w: int, out_w: int, clock_ns: float) -> str:
    return f"""`timescale 1 ns / 1 ps
// Self-checking testbench of {top}, written by fastml: streams one event per clock (II=1) from
// {INPUTS_FILE}, compares model_out {latency} clocks later with {EXPECTED_FILE}, ends with one PASS/FAIL line
// (FAIL through $fatal: exit status 1). Verilog-2005 plus $fatal (iverilog -g2012). Run with the working
// directory firmware/src/memfiles (da4ml's lookup tables are read from there), or give the vector files
// with +inputs=PATH +expected=PATH.
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
    integer cycle;
    integer event_out;
    integer errors;

    {top} dut (.clk(clk), .model_inp(model_inp), .model_out(model_out));

    always #(HALF_PERIOD_NS) clk = ~clk;

    initial begin
        if (!$value$plusargs("inputs=%s", inputs_file)) inputs_file = "../../tb/{INPUTS_FILE}";
        if (!$value$plusargs("expected=%s", expected_file)) expected_file = "../../tb/{EXPECTED_FILE}";
        $readmemh(inputs_file, inputs);
        $readmemh(expected_file, expected);
        errors = 0;
        model_inp = inputs[0];
        // Event `cycle` is taken on rising edge `cycle`; its output is registered on edge `cycle + LATENCY`.
        // Inputs change and outputs are read on the falling edge in between: no race with the design.
        for (cycle = 0; cycle < N_EVENTS + LATENCY; cycle = cycle + 1) begin
            @(posedge clk);
            @(negedge clk);
            if (cycle >= LATENCY) begin
                event_out = cycle - LATENCY;
                if (model_out !== expected[event_out]) begin
                    if (errors < {_SHOWN_MISMATCHES})
                        $display("mismatch: event %0d: model_out %h, expected %h", event_out, model_out,
                                 expected[event_out]);
                    errors = errors + 1;
                end
            end
            model_inp = (cycle + 1 < N_EVENTS) ? inputs[cycle + 1] : {{IN_W{{1'b0}}}};
        end
        if (errors == 0)
            $display("PASS: {top}: %0d events, 0 mismatches (latency %0d clocks, II=1)", N_EVENTS, LATENCY);
        else
            // $fatal: a non-zero exit status for scripts (simulators decorate the line with file and time)
            $fatal(1, "FAIL: {top}: %0d of %0d events mismatch (latency %0d clocks, II=1)", errors, N_EVENTS,
                   LATENCY);
        $finish;
    end
endmodule
"""


def _vhdl_tb(top: str, n_events: int, latency: int, in_w: int, out_w: int, clock_ns: float) -> str:
    half_ps = round(clock_ns * 1000 / 2)
    in_hex, out_hex = 4 * math.ceil(in_w / 4), 4 * math.ceil(out_w / 4)
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

    -- The next non-comment line of a vector file as a bus word (hread needs a multiple of 4 bits).
    procedure next_word(file f : text; word : out std_logic_vector; hex_bits : natural) is
        variable l : line;
        variable wide : std_logic_vector(hex_bits - 1 downto 0);
        variable ok : boolean;
    begin
        loop
            assert not endfile(f) report "vector file ends early" severity failure;
            readline(f, l);
            exit when l'length > 0 and l(l'low) /= '/';
        end loop;
        hread(l, wide, ok);
        assert ok report "bad hex line in a vector file" severity failure;
        word := wide(word'length - 1 downto 0);
    end procedure;
begin
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
                    if errors < {_SHOWN_MISMATCHES} then
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
        if errors = 0 then
            write(l, string'("PASS: {top}: ") & integer'image(N_EVENTS) & string'(" events, 0 mismatches (latency ")
                  & integer'image(LATENCY) & string'(" clocks, II=1)"));
        else
            write(l, string'("FAIL: {top}: ") & integer'image(errors) & string'(" of ") & integer'image(N_EVENTS)
                  & string'(" events mismatch (latency ") & integer'image(LATENCY) & string'(" clocks, II=1)"));
            status := 1;
        end if;
        writeline(output, l);
        running <= false;
        -- a non-zero exit status on FAIL, for scripts
        std.env.finish(status);
        wait;
    end process;
end architecture;
"""


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
    (tb / INPUTS_FILE).write_text("\n".join(
        _header(f"inputs of {top}", "model_inp", in_fields, n, top) + hex_lines(pack(in_ints, in_fields), in_w)) + "\n")
    (tb / EXPECTED_FILE).write_text("\n".join(
        _header(f"expected outputs of {top}, {latency} clocks after each input", "model_out", out_fields, n, top)
        + hex_lines(pack(out_ints, out_fields), out_w)) + "\n")
    (tb / f"{top}_tb.v").write_text(_verilog_tb(top, n, latency, in_w, out_w, clock_ns))
    if flavor == "vhdl":
        (tb / f"{top}_tb.vhd").write_text(_vhdl_tb(top, n, latency, in_w, out_w, clock_ns))
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


def read_interface(firmware_dir: Path) -> dict[str, Any]:
    path = firmware_dir / TB_DIR / INTERFACE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FastmlError(f"{path}: cannot read the testbench's interface ({err}); expected the JSON "
                          "fastml writes with the testbench") from None


__all__ = ["Field", "bus_width", "fields_of", "hex_lines", "pack", "quantise", "read_hex", "read_interface",
           "to_values", "unpack", "write_testbench"]
