"""What the self-checking testbenches of every backend share (``firmware/tb/``): the bus layout of fixed-point
elements, their hex vector files, and the VHDL-2008 pieces that read them and say PASS or FAIL.

A bus packs its elements back to back, element 0 in the lowest bits, each ``keep_negative + integers +
fractional`` bits wide (two's complement when signed); width-0 elements take no bits. A vector file holds
one bus word per line, hex, most significant digit first, after ``//`` header lines that name each
element's bits and type (``$readmemh`` and the VHDL reader below skip them). The rtl backend
(``fastml.backends.rtl.testbench``) drives da4ml's ``model_inp`` / ``model_out`` buses with them; the conifer
backend (``fastml.backends.conifer.testbench``) the features and scores of conifer's VHDL ``BDTTop``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FastmlError

TB_DIR = "tb"
INTERFACE_FILE = "interface.json"
INPUTS_FILE = "inputs.hex"
EXPECTED_FILE = "expected.hex"
#: Mismatches a testbench prints before it only counts.
SHOWN_MISMATCHES = 10


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


def vector_header(what: str, port: str, fields: Sequence[Field], n_events: int, top: str) -> list[str]:
    width = bus_width(fields)
    lines = [f"// fastml test vectors: {what}",
             f"// {n_events} events, one per line: {top}.{port} ({width} bits) as {math.ceil(width / 4)} hex "
             "digits, most significant first",
             "// element 0 in the lowest bits; value = integer * 2^-fraction (two's complement when signed)",
             "// element  bits  type  (signed, integer bits without sign, fraction bits)"]
    lines += [f"// {fd.index} [{fd.msb}:{fd.lsb}] {fd.ap_type} ({int(fd.signed)},{fd.integers},{fd.fractional})"
              for fd in fields]
    return lines


def vector_file(what: str, port: str, fields: Sequence[Field], ints: np.ndarray, top: str) -> str:
    """A vector file's text: the header, then one hex bus word per event (``ints``: per-field integers)."""
    return "\n".join(vector_header(what, port, fields, len(ints), top)
                     + hex_lines(pack(ints, fields), bus_width(fields))) + "\n"


def read_interface(firmware_dir: Path) -> dict[str, Any]:
    path = firmware_dir / TB_DIR / INTERFACE_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise FastmlError(f"{path}: cannot read the testbench's interface ({err}); expected the JSON "
                          "fastml writes with the testbench") from None


#: A VHDL-2008 procedure (declare it in an architecture using ``std.textio``): the next line of a vector file
#: that is not a ``//`` comment, as a bus word (``hread`` reads a multiple of 4 bits: ``hex_bits``).
VHDL_NEXT_WORD = """    -- The next non-comment line of a vector file as a bus word (hread needs a multiple of 4 bits).
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
"""


def hex_bits(width: int) -> int:
    """Bits of the hex digits of a ``width``-bit word (what VHDL's ``hread`` reads)."""
    return 4 * math.ceil(width / 4)


def vhdl_verdict(top: str, extra: str = "") -> str:
    """VHDL statements ending a testbench: one PASS/FAIL line from ``errors`` / ``N_EVENTS`` / ``LATENCY`` (the
    process's variables and constants; ``l : line``, ``status : integer``), then ``std.env.finish(status)``: a
    non-zero exit status on FAIL, for scripts. ``extra``: words after ``II=1`` inside the parentheses."""
    return f"""        if errors = 0 then
            write(l, string'("PASS: {top}: ") & integer'image(N_EVENTS) & string'(" events, 0 mismatches (latency ")
                  & integer'image(LATENCY) & string'(" clocks, II=1{extra})"));
        else
            write(l, string'("FAIL: {top}: ") & integer'image(errors) & string'(" of ") & integer'image(N_EVENTS)
                  & string'(" events mismatch (latency ") & integer'image(LATENCY) & string'(" clocks, II=1{extra})"));
            status := 1;
        end if;
        writeline(output, l);
        running <= false;
        -- a non-zero exit status on FAIL, for scripts
        std.env.finish(status);
        wait;
"""


def ghdl_command(top: str, files: str, work: str | None = None) -> str:
    """The shell line that analyses ``files`` (VHDL-2008, with the testbench ``<top>_tb``) into the GHDL library
    ``work`` (default ``/tmp/<top>_ghdl``), elaborates and runs the testbench: its exit status is the verdict's."""
    work = work or f"/tmp/{top}_ghdl"
    opts = f"--std=08 --workdir={work}"
    return (f"mkdir -p {work} && ghdl -i {opts} {files} && ghdl -m {opts} {top}_tb && ghdl -r {opts} {top}_tb")


__all__ = ["EXPECTED_FILE", "INPUTS_FILE", "INTERFACE_FILE", "SHOWN_MISMATCHES", "TB_DIR", "VHDL_NEXT_WORD", "Field",
           "bus_width", "fields_of", "ghdl_command", "hex_bits", "hex_lines", "pack", "quantise", "read_hex",
           "read_interface", "to_values", "unpack", "vector_file", "vector_header", "vhdl_verdict"]
