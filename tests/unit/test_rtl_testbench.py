"""The bus packing of fastml.backends.rtl.testbench: da4ml's layout (element 0 lowest, minimal widths, width-0
elements dropped), floor-and-wrap quantisation, and hex lines. Under Icarus Verilog, without a build: the generated
Verilog testbench's ``+events=K`` on a stand-in design, and da4ml's lookup-table primitive as a build leaves it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastml.backends.rtl.testbench import (
    bus_width,
    fields_of,
    hex_lines,
    pack,
    quantise,
    read_hex,
    to_values,
    unpack,
)


def test_fields_pack_back_to_back_and_drop_constant_elements() -> None:
    # (keep_negative, integers, fractional): signed 1+2+3, a constant (0 bits), unsigned 0+4+0
    fields = fields_of([(1, 2, 3), (0, 0, 0), (0, 4, 0)])
    assert [(f.index, f.lsb, f.width, f.signed) for f in fields] == [(0, 0, 6, True), (2, 6, 4, False)]
    assert bus_width(fields) == 10
    assert fields[0].ap_type == "ap_fixed<6,3>" and fields[1].ap_type == "ap_ufixed<4,4>"


def test_negative_integer_bits_are_a_valid_format() -> None:
    # a small value with a long fraction: 1 sign bit, -2 integer bits, 6 fraction bits = 5 bits, ap_fixed<5,-1>
    (f,) = fields_of([(1, -2, 6)])
    assert f.width == 5 and f.ap_type == "ap_fixed<5,-1>"


def test_quantise_floors_and_wraps_like_the_hardware() -> None:
    fields = fields_of([(1, 1, 2), (0, 2, 1)])  # signed 4 bits in [-2, 1.75]; unsigned 3 bits in [0, 3.5]
    values = np.array([[-0.3, 1.26], [5.0, -0.5], [1.75, 3.5]])
    ints = quantise(values, fields)
    # -0.3*4 = -1.2 -> floor -2; 5*4 = 20 wraps to 4 in 4 bits; 1.26*2 -> 2; -0.5*2 = -1 wraps to 7 unsigned
    assert ints.tolist() == [[-2, 2], [4, 7], [7, 7]]
    assert to_values(ints, fields, 2).tolist() == [[-0.5, 1.0], [1.0, 3.5], [1.75, 3.5]]


def test_pack_places_element_0_lowest_in_twos_complement() -> None:
    fields = fields_of([(1, 1, 2), (0, 2, 1)])
    words = pack(np.array([[-2, 5], [1, 0]], dtype=object), fields)
    # -2 in 4 bits = 0b1110; 5 in 3 bits = 0b101 above it: 0b101_1110
    assert words == [0b1011110, 0b0000001]
    assert unpack(words, fields).tolist() == [[-2, 5], [1, 0]]


def test_wide_buses_round_trip_through_hex(tmp_path) -> None:
    rng = np.random.default_rng(0)
    # 16*8 + 4*12 + 60 = 236 bits: beyond any machine integer; the 60-bit element beyond float64's exact integers
    fields = fields_of([(1, 3, 4)] * 16 + [(0, 5, 7)] * 4 + [(1, 30, 29)])
    values = rng.normal(scale=4, size=(50, 21))
    ints = quantise(values, fields)
    assert ints[:, -1].tolist() == [int(np.floor(v * 2.0**29)) for v in values[:, -1]]
    lines = hex_lines(pack(ints, fields), bus_width(fields))
    assert all(len(s) == 59 for s in lines)  # ceil(236 / 4) digits, zero-padded
    path = tmp_path / "v.hex"
    path.write_text("// header\n// more\n" + "\n".join(lines) + "\n")
    assert unpack(read_hex(path), fields).tolist() == ints.tolist()


# --- the generated Verilog testbench under Icarus, on a stand-in design (no build) ---

needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                  reason="not run: iverilog not installed (apt-get install iverilog)")

_DELAY_LINE = """module fastml_model (input clk, input [7:0] model_inp, output reg [7:0] model_out);
    // model_out = model_inp: input registered on edge e, output on edge e + LATENCY, as da4ml's top
    reg [7:0] stage [0:{last}];
    integer i;
    always @(posedge clk) begin
        stage[0] <= model_inp;
        for (i = 1; i <= {last}; i = i + 1) stage[i] <= stage[i - 1];
    end
    always @(*) model_out = stage[{last}];
endmodule
"""


def _delay_line_project(root: Path, n_events: int, latency: int) -> Path:
    """``firmware/`` of a stand-in top (8-bit identity, ``latency`` clocks) with the testbench fastml writes and
    ``n_events`` vectors; returns the compiled simulation."""
    from fastml.backends.rtl.testbench import _verilog_tb, vector_file

    fields = fields_of([(0, 8, 0)])
    ints = np.arange(n_events, dtype=np.int64).reshape(-1, 1) * 7 % 256
    src, tb = root / "firmware" / "src", root / "firmware" / "tb"
    (src / "memfiles").mkdir(parents=True)
    tb.mkdir()
    (src / "fastml_model.v").write_text(_DELAY_LINE.format(last=latency))
    (tb / "inputs.hex").write_text(vector_file("inputs", "model_inp", fields, ints, "fastml_model"))
    (tb / "expected.hex").write_text(vector_file("expected", "model_out", fields, ints, "fastml_model"))
    (tb / "fastml_model_tb.v").write_text(_verilog_tb("fastml_model", n_events, latency, 8, 8, 5.0))
    vvp = root / "tb.vvp"
    comp = subprocess.run(["iverilog", "-g2012", "-s", "fastml_model_tb", "-o", str(vvp), str(src / "fastml_model.v"),
                           str(tb / "fastml_model_tb.v")], capture_output=True, text=True, timeout=60)
    assert comp.returncode == 0, comp.stderr
    return vvp


def _vvp(vvp: Path, root: Path, *plusargs: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["vvp", "-n", str(vvp), *plusargs], cwd=root / "firmware" / "src" / "memfiles",
                          capture_output=True, text=True, timeout=60)


def _edit_vectors(path: Path, keep: int | None = None, flip: int | None = None) -> None:
    """Keep the header and the first ``keep`` events of a vector file; flip bit 0 of event ``flip``."""
    lines = path.read_text().splitlines()
    head = [s for s in lines if s.startswith("//")]
    data = [s for s in lines if not s.startswith("//")]
    if flip is not None:
        data[flip] = format(int(data[flip], 16) ^ 1, f"0{len(data[flip])}X")
    path.write_text("\n".join(head + data[:keep]) + "\n")


@needs_icarus
def test_events_plusarg_checks_only_the_first_events(tmp_path: Path) -> None:
    """``+events=K``: K events streamed and compared (the quick run of a big design), from vector files cut to K
    as from full ones; a mismatch after them is not seen, one among them fails the run."""
    vvp = _delay_line_project(tmp_path, n_events=12, latency=3)
    tb = tmp_path / "firmware" / "tb"
    full = _vvp(vvp, tmp_path)
    assert full.returncode == 0 and "PASS: fastml_model: 12 events, 0 mismatches (latency 3 clocks" in full.stdout

    _edit_vectors(tb / "expected.hex", flip=6)  # event 6: beyond the first 5, among all 12
    assert _vvp(vvp, tmp_path).returncode != 0
    short = _vvp(vvp, tmp_path, "+events=5")
    assert short.returncode == 0 and "PASS: fastml_model: 5 events, 0 mismatches" in short.stdout, short.stdout
    seven = _vvp(vvp, tmp_path, "+events=7")
    assert seven.returncode != 0 and "FAIL: fastml_model: 1 of 7 events mismatch" in seven.stdout + seven.stderr
    assert "mismatch: event 6:" in seven.stdout

    for name in ("inputs.hex", "expected.hex"):
        _edit_vectors(tb / name, keep=7)
    cut = _vvp(vvp, tmp_path, "+events=7")
    assert cut.returncode != 0 and "FAIL: fastml_model: 1 of 7 events mismatch" in cut.stdout + cut.stderr
    assert "WARNING" not in cut.stdout + cut.stderr  # the 7 lines are exactly what is read


@needs_icarus
@pytest.mark.parametrize("events", ["0", "13"])
def test_events_plusarg_outside_the_vectors_fails(tmp_path: Path, events: str) -> None:
    vvp = _delay_line_project(tmp_path, n_events=12, latency=2)
    run = _vvp(vvp, tmp_path, f"+events={events}")
    assert run.returncode != 0
    assert f"FAIL: fastml_model: +events={events}, the vector files hold 1 to 12 events" in run.stdout + run.stderr


@needs_icarus
def test_da4ml_lookup_table_elaborates_in_icarus(tmp_path: Path) -> None:
    """da4ml's table primitive, as a build leaves it, elaborates in Icarus Verilog 11 with two table sizes (its
    parameter-dependent rom_style attribute did not: "not a constant expression"), and reads its table."""
    import da4ml.codegen.rtl as da4ml_rtl

    from fastml.backends.rtl.convert import _LOOKUP_TABLE_FILE, _LOOKUP_TABLE_STYLE, portable_lookup_table

    shipped = Path(da4ml_rtl.__file__).parent / "verilog" / "source" / "lookup_table.v"
    # if da4ml changes the primitive, the rewrite no longer applies: look at the new file
    assert _LOOKUP_TABLE_STYLE[0] in shipped.read_text()
    fw = tmp_path / "firmware"
    (fw / _LOOKUP_TABLE_FILE).parent.mkdir(parents=True)
    shutil.copy(shipped, fw / _LOOKUP_TABLE_FILE)
    assert portable_lookup_table(fw) and not portable_lookup_table(fw)  # once; then nothing left to change
    assert _LOOKUP_TABLE_STYLE[1] in (fw / _LOOKUP_TABLE_FILE).read_text()
    assert not portable_lookup_table(tmp_path / "no_project")

    (tmp_path / "t2.mem").write_text("3\n1\n2\n0\n")
    (tmp_path / "t3.mem").write_text("\n".join(f"{v:x}" for v in range(10, 18)) + "\n")
    (tmp_path / "top.v").write_text("""module top;
    wire [3:0] a, b;
    lookup_table #(.BW_IN(2), .BW_OUT(4), .MEM_FILE("t2.mem")) narrow (.in(2'd1), .out(a));
    lookup_table #(.BW_IN(3), .BW_OUT(4), .MEM_FILE("t3.mem")) wide (.in(3'd5), .out(b));
    initial begin #1 $display("tables %0d %0d", a, b); $finish; end
endmodule
""")
    comp = subprocess.run(["iverilog", "-g2012", "-s", "top", "-o", "top.vvp", "top.v", str(fw / _LOOKUP_TABLE_FILE)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert comp.returncode == 0, comp.stderr
    run = subprocess.run(["vvp", "-n", "top.vvp"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "tables 1 15" in run.stdout, run.stdout + run.stderr
