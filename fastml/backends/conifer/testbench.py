"""Test vectors and a self-checking VHDL testbench of a conifer VHDL project (``firmware.conifer_backend: vhdl``).

``write_testbench(firmware_dir, x, reference)`` writes ``firmware/tb/`` (``firmware_dir`` is conifer's output
folder, the project's ``firmware/``; its VHDL is in ``firmware/firmware/``):

====================  ======================================================================
``inputs.hex``        the verification events as conifer's ``BDTTop.X`` array, one event a line
``expected.hex``      the ``BDTTop.y`` scores the firmware must produce for each, one a line
``interface.json``    ports, element formats, latency, clock, event count, where the expected scores come from
``BDTTop_tb.vhd``     VHDL-2008 testbench (GHDL ``--std=08``)
====================  ======================================================================

The vector files are the rtl backend's format (``fastml.backends._testbench``): ``BDTTop``'s ports are arrays
of ``signed`` (``txArray``, ``tyArray``: every element the one ``ap_fixed<W,I>`` of conifer's VHDL backend),
written as one bus word per event with element ``i`` in bits ``[(i+1)W-1 : iW]``. An input element is
``floor(x * 2**(W-I))`` wrapped to W bits: what conifer's own VHDL simulation and fastml's fixed-point
reference (``fastml.backends.conifer.reference``) feed the trees. The expected scores are the build's
fixed-point reference outputs for the same events, which the build compared bit for bit with conifer's VHDL
simulated by GHDL (``report.json`` ``verification.rtl_sim``; "not run" without a VHDL simulator).

The latency is the design's own, counted from its VHDL (``latency_of``): ``maxDepth + 2`` clocks through a tree,
``ceil(log2(nTrees + 1))`` adder stages for the sum of the trees and ``initPredict``, and one more register for
the normalisation unless its code is exactly 1. The testbench streams
one event per clock (II=1) with ``X_vld`` high and compares ``y`` ``latency`` clocks later, where
``y_vld(0)`` must be high; a ``y_vld`` high before the latency counts as a mismatch too, so a wrong latency
cannot pass. It runs from ``firmware/`` (conifer's output folder): default vector paths ``tb/*.hex``, or the
generics ``INPUTS_FILE`` / ``EXPECTED_FILE``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..._internal.fixed_point import APFixed
from ...errors import FastmlError
from .._testbench import (
    EXPECTED_FILE,
    INPUTS_FILE,
    INTERFACE_FILE,
    SHOWN_MISMATCHES,
    TB_DIR,
    VHDL_NEXT_WORD,
    Field,
    fields_of,
    hex_bits,
    quantise,
    to_values,
    vector_file,
    vhdl_verdict,
)

#: conifer's VHDL top entity (``BDTTop.vhd``) and the folder of its sources inside its output folder.
TOP = "BDTTop"
VHDL_DIR = "firmware"
#: The design's sources in a compile order (GHDL ``-a``; ``Arrays*.vhd`` between ``AddReduce`` and ``BDT``).
DESIGN_FILES = ("Constants.vhd", "Split.vhd", "Types.vhd", "Tree.vhd", "AddReduce.vhd")
TOP_FILES = ("BDT.vhd", "BDTTop.vhd")


def _constants(vhdl_dir: Path) -> dict[str, int]:
    """The integer constants and ``tx``/``ty`` widths of conifer's ``Constants.vhd``."""
    text = (vhdl_dir / "Constants.vhd").read_text()
    found = {m[1]: int(m[2]) for m in re.finditer(r"constant\s+(\w+)\s*:\s*integer\s*:=\s*(-?\d+)\s*;", text)}
    for sub in ("tx", "ty"):
        m = re.search(rf"subtype\s+{sub}\s+is\s+signed\((\d+)\s+downto\s+0\)", text)
        if m:
            found[f"{sub}_width"] = int(m[1]) + 1
    return found


def _normalisation_codes(vhdl_dir: Path, n_classes: int) -> list[int]:
    codes = []
    for i in range(n_classes):
        text = (vhdl_dir / f"Arrays{i}.vhd").read_text()
        m = re.search(r"constant\s+normalisation\s*:\s*ty\s*:=\s*to_ty\((-?\d+)\)", text)
        if m is None:
            raise ValueError(f"no normalisation constant in Arrays{i}.vhd")
        codes.append(int(m[1]))
    return codes


def _clock_period_ns(recipe_copy: Path) -> float:
    """``firmware.clock_period_ns`` of the project's recipe copy; 5 ns (conifer's own testbench) without one.

    Only the simulated time scale depends on it, not what the testbench checks."""
    try:
        doc = yaml.safe_load(recipe_copy.read_text())
        return float(doc["firmware"]["clock_period_ns"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return 5.0


def latency_of(n_trees: int, max_depth: int, normalisation_code: int) -> int:
    """Clocks from the rising edge that takes an event into ``BDTTop`` to the one that registers its score.

    ``Tree.vhd``: the comparisons register on that edge (``comparison``), the node activations of tree level
    ``d`` one edge after ``comparisonPipe(d)`` (level ``d`` on edge ``d + 1``), the active leaf's score one edge
    after the deepest level: ``maxDepth + 2``. ``AddReduce.vhd`` sums ``nTrees + 1`` values (the trees and
    ``initPredict``) in ``ceil(log2(nTrees + 1))`` register stages; ``BDT.vhd`` registers the product with the
    normalisation unless its code equals 1. (conifer's performance estimate, ``2 + depth + ceil(log2 nTrees)``,
    is not this count.) The testbench checks it: ``y_vld`` must rise exactly then, and the scores match.
    """
    tree = max_depth + 2
    reduce = math.ceil(math.log2(n_trees + 1)) if n_trees + 1 > 1 else 0
    return tree + reduce + (0 if normalisation_code == 1 else 1)


def _vhdl_tb(n_events: int, latency: int, n_in: int, n_out: int, w_in: int, w_out: int, clock_ns: float) -> str:
    half_ps = round(clock_ns * 1000 / 2)
    in_w, out_w = n_in * w_in, n_out * w_out
    return f"""-- Self-checking testbench of conifer's {TOP}, written by fastml: streams one event per clock (II=1) from
-- {INPUTS_FILE} with X_vld high, compares y {latency} clocks later with {EXPECTED_FILE} (y_vld(0) must be high
-- then, and low before), ends with one PASS/FAIL line (FAIL: exit status 1).
-- VHDL-2008, compiled into the design's library. Run with the working directory firmware/ (conifer's output
-- folder), or set the generics INPUTS_FILE / EXPECTED_FILE.
library ieee;
use ieee.std_logic_1164.all;
use ieee.numeric_std.all;
use std.textio.all;

use work.Constants.all;
use work.Types.all;

entity {TOP}_tb is
    generic (
        INPUTS_FILE : string := "{TB_DIR}/{INPUTS_FILE}";
        EXPECTED_FILE : string := "{TB_DIR}/{EXPECTED_FILE}"
    );
end entity;

architecture sim of {TOP}_tb is
    constant N_EVENTS : natural := {n_events};
    constant LATENCY : natural := {latency};  -- clocks from the edge that takes an event to the one that outputs it
    constant N_IN : natural := {n_in};  -- features, {w_in} bits each, feature 0 in the lowest bits of a word
    constant N_OUT : natural := {n_out};  -- scores, {w_out} bits each
    constant W_IN : natural := {w_in};
    constant W_OUT : natural := {w_out};
    constant IN_W : natural := {in_w};
    constant OUT_W : natural := {out_w};
    constant HALF_PERIOD : time := {half_ps} ps;
    type in_array is array (0 to N_EVENTS - 1) of std_logic_vector(IN_W - 1 downto 0);
    type out_array is array (0 to N_EVENTS - 1) of std_logic_vector(OUT_W - 1 downto 0);

    signal clk : std_logic := '0';
    signal running : boolean := true;
    signal X : txArray(0 to nFeatures - 1) := (others => (others => '0'));
    signal X_vld : boolean := false;
    signal y : tyArray(0 to nClasses - 1);
    signal y_vld : boolArray(0 to nClasses - 1);

{VHDL_NEXT_WORD}
    -- The score array as one word, score 0 in the lowest bits (the layout of {EXPECTED_FILE}).
    function packed(s : tyArray) return std_logic_vector is
        variable word : std_logic_vector(OUT_W - 1 downto 0);
    begin
        for i in 0 to N_OUT - 1 loop
            word((i + 1) * W_OUT - 1 downto i * W_OUT) := std_logic_vector(s(s'low + i));
        end loop;
        return word;
    end function;
begin
    assert nFeatures = N_IN and nClasses = N_OUT and tx'length = W_IN and ty'length = W_OUT
        report "the vectors do not match this design's Constants (features, classes or widths)" severity failure;

    dut : entity work.{TOP} port map (clk => clk, X => X, X_vld => X_vld, y => y, y_vld => y_vld);

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

        procedure drive(word : std_logic_vector(IN_W - 1 downto 0); valid : boolean) is
        begin
            for i in 0 to N_IN - 1 loop
                X(i) <= signed(word((i + 1) * W_IN - 1 downto i * W_IN));
            end loop;
            X_vld <= valid;
        end procedure;
    begin
        for i in 0 to N_EVENTS - 1 loop
            next_word(fin, inputs(i), {hex_bits(in_w)});
            next_word(fexp, expected(i), {hex_bits(out_w)});
        end loop;
        drive(inputs(0), true);
        -- Event `cycle` is taken on rising edge `cycle`; its score is registered on edge `cycle + LATENCY`.
        -- Inputs change and outputs are read on the falling edge in between: no race with the design.
        for cycle in 0 to N_EVENTS + LATENCY - 1 loop
            wait until rising_edge(clk);
            wait until falling_edge(clk);
            if cycle >= LATENCY then
                event_out := cycle - LATENCY;
                if packed(y) /= expected(event_out) or not y_vld(0) then
                    if errors < {SHOWN_MISMATCHES} then
                        write(l, string'("mismatch: event ") & integer'image(event_out) & string'(": y ")
                              & to_hstring(packed(y)) & string'(", expected ") & to_hstring(expected(event_out))
                              & string'(", y_vld ") & boolean'image(y_vld(0)));
                        writeline(output, l);
                    end if;
                    errors := errors + 1;
                end if;
            elsif y_vld(0) then
                -- a score valid before the latency: the latency this testbench assumes is not the design's
                write(l, string'("mismatch: y_vld high ") & integer'image(cycle) & string'(" clocks after the first ")
                      & string'("event, before the latency"));
                writeline(output, l);
                errors := errors + 1;
            end if;
            if cycle + 1 < N_EVENTS then
                drive(inputs(cycle + 1), true);
            else
                drive((others => '0'), false);
            end if;
        end loop;
{vhdl_verdict(TOP)}    end process;
end architecture;
"""


def write_testbench(firmware_dir: Path, x: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Write ``firmware_dir / "tb"`` for the events ``x`` (scaled floats) and the build's reference scores.

    Reads the project's own files (conifer's ``<project>.json`` and its VHDL constants), so it runs during a build
    and on a project built earlier alike. Returns the interface description also written as ``tb/interface.json``.
    """
    vhdl_dir = firmware_dir / VHDL_DIR
    try:
        consts = _constants(vhdl_dir)
        n_in, n_out = consts["nFeatures"], consts["nClasses"]
        norm_codes = _normalisation_codes(vhdl_dir, n_out)
        (conifer_json,) = [p for p in sorted(firmware_dir.glob("*.json"))
                           if "config" in (doc := json.loads(p.read_text())) and "trees" in doc]
        config = json.loads(conifer_json.read_text())["config"]
        precision = APFixed.parse(str(config["input_precision"]))
        latency = latency_of(consts["nTrees"], consts["maxDepth"], norm_codes[0])
    except (OSError, ValueError, KeyError) as err:
        raise FastmlError(f"{firmware_dir}: cannot read the conifer VHDL project for its testbench ({err}); expected "
                          f"{VHDL_DIR}/Constants.vhd, {VHDL_DIR}/Arrays*.vhd and conifer's <project>.json, as a "
                          "conifer_backend: vhdl build writes them") from None
    if len(set(norm_codes)) != 1 or not consts.get("tx_width") == consts.get("ty_width") == precision.width:
        raise FastmlError(f"{firmware_dir}: the conifer VHDL project mixes types or normalisations (widths "
                          f"{consts.get('tx_width')}/{consts.get('ty_width')}, {precision}); testbench not written")
    # ap_fixed<W,I>: W bits, I of them (sign included) above the binary point
    fmt = (1, precision.integer - 1, precision.width - precision.integer)
    in_fields, out_fields = fields_of([fmt] * n_in), fields_of([fmt] * n_out)

    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(x), -1)
    if x.shape[1] != n_in or ref.shape[1] != n_out:
        raise FastmlError(f"{firmware_dir}: the verification events have {x.shape[1]} inputs and {ref.shape[1]} "
                          f"outputs; the VHDL takes {n_in} features and gives {n_out} scores")
    # what the trees see: the reference's input cast (floor, wrap), the same integers conifer's simulation feeds
    in_ints = np.asarray(precision.to_codes(x), dtype=np.int64).astype(object)
    out_ints = quantise(ref, out_fields)
    if not np.array_equal(to_values(out_ints, out_fields, n_out), ref):
        raise FastmlError(f"{firmware_dir}: the reference scores are not values of {precision}; testbench not written")

    clock_ns = _clock_period_ns(firmware_dir.parent / "config.yaml")
    tb = firmware_dir / TB_DIR
    tb.mkdir(parents=True, exist_ok=True)
    n = len(x)
    (tb / INPUTS_FILE).write_text(vector_file(f"inputs of {TOP} (X, one ap_fixed per feature)", "X", in_fields,
                                              in_ints, TOP))
    (tb / EXPECTED_FILE).write_text(vector_file(f"expected scores of {TOP}, {latency} clocks after each input", "y",
                                                out_fields, out_ints, TOP))
    (tb / f"{TOP}_tb.vhd").write_text(_vhdl_tb(n, latency, n_in, n_out, precision.width, precision.width, clock_ns))
    interface = {
        "top": TOP, "flavor": "vhdl", "latency_cycles": latency, "ii": 1, "clock_period_ns": clock_ns,
        "part": config.get("xilinx_part"), "events": n, "precision": str(precision),
        "expected_from": "the build's fixed-point reference (model/verify_inputs.npz y_ref), compared bit for bit "
                         "with conifer's VHDL in the build's rtl_sim level where a VHDL simulator ran",
        "sources": [f"{VHDL_DIR}/{f}" for f in DESIGN_FILES]
                   + [f"{VHDL_DIR}/Arrays{i}.vhd" for i in range(n_out)] + [f"{VHDL_DIR}/{f}" for f in TOP_FILES],
        "ports": [{"name": "clk", "direction": "in", "width": 1},
                  {"name": "X", "direction": "in", "width": precision.width * n_in, "elements": n_in,
                   "type": "txArray (signed)"},
                  {"name": "X_vld", "direction": "in", "width": 1, "type": "boolean"},
                  {"name": "y", "direction": "out", "width": precision.width * n_out, "elements": n_out,
                   "type": "tyArray (signed)"},
                  {"name": "y_vld", "direction": "out", "width": n_out, "type": "boolArray"}],
        "inputs": [asdict(f) for f in in_fields], "outputs": [asdict(f) for f in out_fields],
    }
    (tb / INTERFACE_FILE).write_text(json.dumps(interface, indent=1) + "\n")
    return interface


__all__ = ["TOP", "Field", "latency_of", "write_testbench"]
