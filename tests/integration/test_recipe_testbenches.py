"""The ``firmware/tb/`` Verilog testbench of every shipped rtl recipe's quick build, run by Icarus Verilog.

tests/integration/test_testbench.py proves the testbench writer with Icarus, verilator and GHDL on a tiny 16 -> 8 -> 5
MLP; here it meets the recipes' own port shapes and logic: particle inputs (jet_deepsets, jet_attention), images
(calo_conv), an autoencoder's score (anomaly_ae), HGQ2 table layers (jet_lut: da4ml's lookup-table primitive and its
memory files), a QKeras model compiled by alkaid (byo_qkeras_rtl: alkaid's Verilog, the same testbench), a QONNX
graph traced by alkaid (byo_qonnx_rtl: 42-bit input elements, the input Quant's rounding in the firmware) and a
float model quantised on import (byo_float_quantize). Each project is the session's ``--quick`` build
(``quick_recipe_build``, shared with test_kinds / test_anomaly / test_diagnose); the simulation runs on a copy of
its ``firmware/src`` and ``firmware/tb``. The testbench must say PASS and exit 0, and FAIL with a non-zero exit
once one bit of one expected output in the copy is flipped.

Icarus is event-driven and interprets every net of the generated netlist, so the 2 000 events of a quick build
would take minutes (jet_tagger_rtl: 72 s) to a quarter of an hour (jet_attention, ~0.4 s a clock). Only the first
``K`` events run: the copied vector files are cut to them and the testbench's ``+events=K`` says so. ``K`` is at
least 8 and at least the latency + 4, so the pipeline is full for some clocks and every event's output is compared
``latency`` clocks after it went in. Measured on the 2-core machine these tests were written on, under a load of ~5
(another test run beside them), one vvp run of ``K`` events (``iverilog`` compiles once, both runs share it):

==================  ====  =======  =========  ===============
recipe              K     latency  vvp run    iverilog (CPU)
==================  ====  =======  =========  ===============
jet_tagger_rtl      200   7        3.4-4 s    0.6 s
jet_lut             200   4        3-3.3 s    0.7 s
anomaly_ae          200   8        5-6 s      0.6 s
calo_conv           200   6        1.8 s      0.8 s
byo_float_quantize  48    8        4.4 s      4 s
byo_qkeras_rtl      48    12       5.5-6 s    2 s
jet_deepsets        16    7        5.5 s      27 s
jet_attention       23    19       16-18 s    27 s
==================  ====  =======  =========  ===============

byo_qonnx_rtl (K 48, latency 12) was measured only as a whole: 56 s for the test (iverilog and both vvp runs),
on the same machine under a similar load.

jet_attention's K is its floor (latency 19 + 4): it cannot be simulated in less here. Icarus needs fastml's
constant ``rom_style`` in da4ml's ``lookup_table.v`` (``fastml.backends.rtl.convert.portable_lookup_table``) to
compile jet_lut and jet_attention at all (Icarus 11: "not a constant expression").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fastml.backends.rtl.testbench import EXPECTED_FILE, INPUTS_FILE

TOP = "fastml_model"
#: Recipe -> events simulated, K (the module docstring has what each costs).
EVENTS: dict[str, int] = {
    "jet_tagger_rtl": 200,
    "jet_lut": 200,
    "anomaly_ae": 200,
    "calo_conv": 200,
    "byo_float_quantize": 48,
    "byo_qkeras_rtl": 48,
    "byo_qonnx_rtl": 48,
    "jet_deepsets": 16,
    "jet_attention": 23,
}
#: Clocks beyond the latency that K must give, so some clocks have the pipeline full.
FULL_PIPELINE_CLOCKS = 4
SIM_TIMEOUT_S = 600


def _cut_vectors(path: Path, keep: int, flip: int | None = None) -> None:
    """Keep a vector file's ``//`` header and its first ``keep`` events; flip bit 0 of event ``flip``."""
    lines = path.read_text().splitlines()
    head = [s for s in lines if s.startswith("//")]
    data = [s for s in lines if s and not s.startswith("//")][:keep]
    if flip is not None:
        data[flip] = format(int(data[flip], 16) ^ 1, f"0{len(data[flip])}X")
    path.write_text("\n".join(head + data) + "\n")


def _verdict(out: str) -> str:
    verdicts = [ln for ln in out.splitlines() if "PASS: " in ln or "FAIL: " in ln]
    assert len(verdicts) == 1, out[-3000:]
    return verdicts[0]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="not run: iverilog not installed (apt-get install iverilog; scripts/bootstrap.sh does it)")
@pytest.mark.parametrize("recipe", list(EVENTS))
def test_recipe_testbench_passes_in_icarus_and_fails_on_one_flipped_bit(recipe: str, quick_recipe_build,
                                                                          tmp_path: Path) -> None:
    project = quick_recipe_build(f"{recipe}.yaml")
    firmware = tmp_path / "firmware"
    for part in ("src", "tb"):  # the copy the simulator runs in; the shared project is left as built
        shutil.copytree(project / "firmware" / part, firmware / part)
    tb = firmware / "tb"
    iface = json.loads((tb / "interface.json").read_text())
    assert iface["differs_from_reference"] == 0 and iface["ii"] == 1
    latency = int(iface["latency_cycles"])
    k = max(EVENTS[recipe], latency + FULL_PIPELINE_CLOCKS, 8)
    assert k <= iface["events"], iface
    for name in (INPUTS_FILE, EXPECTED_FILE):
        _cut_vectors(tb / name, k)

    src = firmware / "src"
    sources = sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v"))
    vvp = tmp_path / "tb.vvp"
    t0 = time.perf_counter()
    comp = subprocess.run(["iverilog", "-g2012", "-s", f"{TOP}_tb", "-o", str(vvp), *map(str, sources),
                           str(tb / f"{TOP}_tb.v")], cwd=src / "memfiles", capture_output=True, text=True,
                          timeout=SIM_TIMEOUT_S)
    assert comp.returncode == 0, comp.stderr[-3000:]
    print(f"{recipe}: iverilog took {time.perf_counter() - t0:.1f} s")  # with -s: the costs in the docstring

    def simulate() -> subprocess.CompletedProcess[str]:
        t0 = time.perf_counter()
        run = subprocess.run(["vvp", "-n", str(vvp), f"+events={k}"], cwd=src / "memfiles", capture_output=True,
                             text=True, timeout=SIM_TIMEOUT_S)
        print(f"{recipe}: {k} events (latency {latency}) simulated in {time.perf_counter() - t0:.1f} s")
        return run

    ok = simulate()
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert _verdict(ok.stdout).startswith(f"PASS: {TOP}: {k} events, 0 mismatches (latency {latency} clocks"), ok.stdout

    flipped = k // 2
    _cut_vectors(tb / EXPECTED_FILE, k, flip=flipped)
    bad = simulate()
    assert bad.returncode != 0, bad.stdout[-3000:]
    assert f"FAIL: {TOP}: 1 of {k} events mismatch" in _verdict(bad.stdout + bad.stderr)
    assert f"mismatch: event {flipped}:" in bad.stdout
