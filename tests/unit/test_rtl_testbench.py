"""The bus packing of fastml.backends.rtl.testbench: da4ml's layout (element 0 lowest, minimal widths, width-0
elements dropped), floor-and-wrap quantisation, and hex lines."""

from __future__ import annotations

import numpy as np

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
