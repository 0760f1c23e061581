"""firmware/tb/ of conifer VHDL builds, run by GHDL (not through conifer) on a fresh copy of the project.

Two tiny xgboost BDTs (5 classes; 2 rounds of depth 2, and 4 rounds of depth 3: the latency the testbench counts
from the VHDL differs, 7 and 9 clocks) are built through ``fastml.pipeline.build`` with conifer's VHDL backend.
The testbench must say PASS on the vectors as written, and FAIL (non-zero exit) once one bit of one expected
score is flipped, or once its latency is one clock off — the proof that it can fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastml.backends._testbench import EXPECTED_FILE, INPUTS_FILE, fields_of, read_hex, to_values, unpack

TOP = "BDTTop"
N_VERIFY = 300
SIM_TIMEOUT_S = 300
#: (rounds, depth) -> the latency in clocks counted from the VHDL (tree depth + 2, adder stages, normalisation)
SHAPES = {(2, 2): 2 + 2 + 2 + 1, (4, 3): 3 + 2 + 3 + 1}

RECIPE = """\
name: {name}
data:
  source: builtin:jets_hlf
  max_samples: 4000
model:
  kind: bdt
  library: xgboost
  n_estimators: {rounds}
  max_depth: {depth}
firmware:
  backend: conifer
  conifer_backend: vhdl
  precision: "ap_fixed<16,6>"
  clock_period_ns: 4.0
  yosys: false
  output_dir: {out}
verify:
  samples: {samples}
"""

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("ghdl") is None,
    reason="not run: ghdl not installed (apt-get install ghdl; scripts/bootstrap.sh does it)")]


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], Path]:
    from fastml.pipeline import build
    from fastml.recipe import load_config

    out = tmp_path_factory.mktemp("conifer_tb")
    built = {}
    for rounds, depth in SHAPES:
        name = f"bdt_{rounds}x{depth}"
        recipe = out / f"{name}.yaml"
        recipe.write_text(RECIPE.format(name=name, rounds=rounds, depth=depth, out=out / "projects",
                                        samples=N_VERIFY))
        report = build(load_config(recipe), quick=True, progress=False, log=lambda _: None)
        assert report.status == "ok" and report.verification["rtl_sim"].mismatches == 0
        built[(rounds, depth)] = out / "projects" / name
    return built


def _fresh_copy(project: Path, where: Path) -> Path:
    """The integrator's copy: the project without conifer's compiled GHDL libraries and simulation files."""
    shutil.copytree(project, where, ignore=shutil.ignore_patterns("*.cf", "Simulation*.txt", "*.log"))
    return where


def _ghdl(firmware: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """Analyse (``-i``/``-m``) the sources the testbench's interface.json lists, then run it from ``firmware/``."""
    iface = json.loads((firmware / "tb" / "interface.json").read_text())
    work.mkdir(exist_ok=True)
    opts = ["--std=08", f"--workdir={work}"]
    for cmd in (["ghdl", "-i", *opts, *iface["sources"], f"tb/{TOP}_tb.vhd"], ["ghdl", "-m", *opts, f"{TOP}_tb"]):
        comp = subprocess.run(cmd, cwd=firmware, capture_output=True, text=True, timeout=SIM_TIMEOUT_S)
        assert comp.returncode == 0, comp.stdout + comp.stderr
    return subprocess.run(["ghdl", "-r", *opts, f"{TOP}_tb"], cwd=firmware, capture_output=True, text=True,
                          timeout=SIM_TIMEOUT_S)


def _verdict(out: str) -> str:
    verdicts = [ln for ln in out.splitlines() if "PASS: " in ln or "FAIL: " in ln]
    assert len(verdicts) == 1, out
    return verdicts[0]


def test_build_writes_vectors_of_the_verified_events(projects) -> None:
    project = projects[(2, 2)]
    report = json.loads((project / "report.json").read_text())
    assert report["firmware"]["testbench"] == f"firmware/tb: {N_VERIFY} events, vhdl testbench of {TOP}"
    tb = project / "firmware" / "tb"
    iface = json.loads((tb / "interface.json").read_text())
    assert iface["events"] == N_VERIFY and iface["ii"] == 1 and iface["latency_cycles"] == SHAPES[(2, 2)]
    assert iface["clock_period_ns"] == 4.0 and iface["precision"] == "ap_fixed<16,6>"
    assert all((project / "firmware" / src).is_file() for src in iface["sources"])

    # decoded, the vectors are the build's own events (cast as the reference casts them) and reference scores
    saved = np.load(project / "model" / "verify_inputs.npz")
    fields_in = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["inputs"]])
    fields_out = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["outputs"]])
    assert len(fields_in) == 16 and len(fields_out) == 5 and fields_in[0].ap_type == "ap_fixed<16,6>"
    x = to_values(unpack(read_hex(tb / INPUTS_FILE), fields_in), fields_in, 16)
    np.testing.assert_array_equal(x, np.floor(np.asarray(saved["x"], np.float64) * 1024) / 1024)
    y = to_values(unpack(read_hex(tb / EXPECTED_FILE), fields_out), fields_out, 5)
    np.testing.assert_array_equal(y, np.asarray(saved["y_ref"], np.float64))
    assert (tb / INPUTS_FILE).read_text().startswith(f"// fastml test vectors: inputs of {TOP}")


@pytest.mark.parametrize("shape", list(SHAPES), ids=lambda s: f"{s[0]}x{s[1]}")
def test_ghdl_passes_on_a_fresh_copy_and_fails_on_one_flipped_bit(projects, shape, tmp_path) -> None:
    root = _fresh_copy(projects[shape], tmp_path / "copy")
    ok = _ghdl(root / "firmware", tmp_path / "work")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _verdict(ok.stdout) == (f"PASS: {TOP}: {N_VERIFY} events, 0 mismatches "
                                   f"(latency {SHAPES[shape]} clocks, II=1)")

    expected = root / "firmware" / "tb" / EXPECTED_FILE
    lines = expected.read_text().splitlines()
    data = [i for i, s in enumerate(lines) if not s.startswith("//")]
    lines[data[11]] = format(int(lines[data[11]], 16) ^ (1 << 17), f"0{len(lines[data[11]])}X")  # score 1, bit 1
    expected.write_text("\n".join(lines) + "\n")
    bad = _ghdl(root / "firmware", tmp_path / "work")
    assert bad.returncode != 0
    assert _verdict(bad.stdout).startswith(f"FAIL: {TOP}: 1 of {N_VERIFY} events mismatch")
    assert "mismatch: event 11:" in bad.stdout


def test_a_latency_one_clock_off_fails(projects, tmp_path) -> None:
    """The testbench checks y_vld as well as the scores: one clock short, the scores and y_vld are early."""
    root = _fresh_copy(projects[(2, 2)], tmp_path / "copy")
    tb = root / "firmware" / "tb" / f"{TOP}_tb.vhd"
    latency = SHAPES[(2, 2)]
    text, n = re.subn(rf"constant LATENCY : natural := {latency};", f"constant LATENCY : natural := {latency - 1};",
                      tb.read_text())
    assert n == 1
    tb.write_text(text)
    bad = _ghdl(root / "firmware", tmp_path / "work")
    assert bad.returncode != 0 and _verdict(bad.stdout).startswith(f"FAIL: {TOP}: ")
    assert "y_vld false" in bad.stdout  # event 0's score is not valid yet one clock early
