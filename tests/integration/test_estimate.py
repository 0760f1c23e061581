"""Open-tool estimates: da4ml's cost model and a real ``yosys synth_xilinx`` run on generated Verilog."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from fastml._internal.da4ml import da4ml_estimate
from fastml._internal.tools import find_yosys
from fastml._internal.yosys import resources_from_cells, yosys_family, yosys_resources
from fastml.backends.rtl.estimate import rtl_verilog_sources
from fastml.errors import FastmlError, ToolError
from fastml.estimate import estimate_project
from fastml.report import Report, load_report, write_report

needs_yosys = pytest.mark.skipif(find_yosys() is None,
                                 reason="yosys not installed (/usr/bin/yosys absent): apt-get install yosys")


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_rtl_trained):
    """A built rtl project folder (report.json, config.yaml, firmware/) for a tiny MLP; no simulation compiled."""
    from tiny_rtl import rtl_config

    from fastml.backends import convert

    trained, _ = tiny_rtl_trained
    cfg = rtl_config(rtl_sim=False)
    project_dir = tmp_path_factory.mktemp("estimate") / cfg.name
    fw_project = convert(trained, cfg, project_dir)
    (project_dir / "config.yaml").write_text(cfg.to_yaml())
    report = Report(name=cfg.name, backend="rtl", resources=dict(fw_project.resources))
    report.set_latency(fw_project.latency)
    write_report(report, project_dir)
    return project_dir, cfg, trained, fw_project


@pytest.fixture(scope="module")
def estimated(project):
    """``estimate_project`` with yosys, run once: the real synthesis shared by the tests below."""
    project_dir = project[0]
    if find_yosys() is None:
        pytest.skip("yosys not installed (/usr/bin/yosys absent): apt-get install yosys")
    return estimate_project(project_dir, run_yosys=True)


@pytest.mark.slow
@needs_yosys
def test_yosys_counts_from_a_real_run(project, estimated):
    project_dir, _, _, fw_project = project
    res = estimated.resources["yosys"]
    cells = res.cells
    assert any(c.startswith("LUT") for c in cells) and "FDRE" in cells
    assert res.lut == sum(n for c, n in cells.items() if c.startswith("LUT")) + cells.get("INV", 0) > 0
    assert res.ff == sum(n for c, n in cells.items() if c.startswith("FD")) > 0
    assert res.carry == sum(n for c, n in cells.items() if c.startswith("CARRY")) > 0
    assert res.dsp == 0 and res.bram == 0  # distributed arithmetic: adders only
    assert res.family == "xcup"
    # yosys and da4ml describe the same netlist: FFs at most da4ml's register bits (constants are pruned),
    # LUTs within a small factor of da4ml's adder-bit cost.
    da4ml = fw_project.resources["da4ml_estimate"]
    assert 0.5 * da4ml.ff <= res.ff <= da4ml.ff
    assert 0.3 * da4ml.lut <= res.lut <= 3 * da4ml.lut
    assert "synth_xilinx" in (project_dir / "logs" / "yosys.log").read_text()


@pytest.mark.slow
@needs_yosys
def test_estimate_project_writes_both_sources_and_latency(project, estimated):
    project_dir, cfg, _, fw_project = project
    on_disk = load_report(project_dir)
    assert set(on_disk.resources) >= {"yosys", "da4ml_estimate"}
    assert on_disk.resources["yosys"].lut == estimated.resources["yosys"].lut
    assert on_disk.resources["da4ml_estimate"].lut == fw_project.resources["da4ml_estimate"].lut
    meta = json.loads((project_dir / "firmware" / "metadata.json").read_text())
    assert on_disk.latency.source == "da4ml"
    assert on_disk.latency.cycles == meta["latency"] == fw_project.latency.cycles
    assert on_disk.latency.ns == pytest.approx(meta["latency"] * cfg.firmware.clock_period_ns)
    assert on_disk.firmware["estimates"] == {"da4ml_estimate": "ok", "yosys": "ok"}
    assert "| yosys |" in (project_dir / "report.md").read_text()


def test_yosys_failure_is_a_one_line_tool_error(tmp_path):
    if find_yosys() is None:
        pytest.skip("yosys not installed (/usr/bin/yosys absent): apt-get install yosys")
    bad = tmp_path / "bad.v"
    bad.write_text("module broken(input a, output b); assign b = ; endmodule\n")
    log = tmp_path / "yosys.log"
    with pytest.raises(ToolError) as err:
        yosys_resources([bad], "broken", log_path=log)
    assert "\n" not in str(err.value) and "yosys" in str(err.value) and str(log) in str(err.value)


@pytest.mark.slow
def test_yosys_maps_da4ml_table_roms_to_luts(tmp_path):
    """da4ml's lookup_table.v (LUT networks, softmax) synthesises: its rom_style attribute stopped yosys 0.23's
    synth_xilinx ("no valid mapping found for memory"); fastml drops it for designs that set it, and only there."""
    if find_yosys() is None:
        pytest.skip("yosys not installed (/usr/bin/yosys absent): apt-get install yosys")
    import da4ml

    from fastml._internal.yosys import _rom_style_fix

    rom = Path(da4ml.__file__).parent / "codegen" / "rtl" / "verilog" / "source" / "lookup_table.v"
    # 64 entries of 6 bits: entry i holds (7 * i) mod 64, so every output bit depends on the address
    (tmp_path / "t.mem").write_text("".join(f"{(7 * i) % 64:02x}\n" for i in range(64)))
    top = tmp_path / "top.v"
    top.write_text("module top(input [5:0] a, output [5:0] y);\n"
                   "  lookup_table #(.BW_IN(6), .BW_OUT(6), .MEM_FILE(\"t.mem\")) u (.in(a), .out(y));\nendmodule\n")
    res = yosys_resources([top, rom], "top", workdir=tmp_path)
    assert res.lut > 0 and res.bram == 0 and res.dsp == 0
    assert _rom_style_fix([str(top), str(rom)], "top") and _rom_style_fix([str(top)], "top") == ""


def test_missing_yosys_is_a_tool_error(monkeypatch, tmp_path):
    import fastml._internal.tools as tools

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "DEFAULT_YOSYS", tmp_path / "no-yosys")
    with pytest.raises(ToolError, match=r"^yosys not found: apt-get install yosys"):
        yosys_resources([tmp_path / "x.v"], "top")


def test_da4ml_estimate_matches_the_rtl_project(project):
    _, cfg, trained, fw_project = project
    resources, latency = da4ml_estimate(trained.model, cfg)
    assert latency.source == "da4ml_estimate"
    assert latency.cycles == fw_project.latency.cycles and latency.ii == 1
    assert latency.ns == pytest.approx(latency.cycles * cfg.firmware.clock_period_ns)
    assert (resources.lut, resources.ff) == (fw_project.resources["da4ml_estimate"].lut,
                                             fw_project.resources["da4ml_estimate"].ff)


def test_cli_estimate_on_config_and_project_dir(project, tmp_path, capsys):
    from fastml.commands import estimate as estimate_cmd

    project_dir, cfg, _, _ = project
    copy = tmp_path / "out" / cfg.name
    shutil.copytree(project_dir, copy)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(cfg.to_yaml().replace("output_dir: hls_projects", f"output_dir: {tmp_path / 'out'}"))
    parser = argparse.ArgumentParser()
    estimate_cmd.register(parser.add_subparsers())
    for target in (str(recipe), str(copy)):
        args = parser.parse_args(["estimate", target, "--no-yosys"])
        assert args.func(args) == 0
        assert f"{copy}: estimates for {cfg.name} (rtl)" in capsys.readouterr().out
    report = load_report(copy)
    assert report.firmware["estimates"]["yosys"] in ("not run: --no-yosys", "kept from an earlier run (--no-yosys)")
    with pytest.raises(FastmlError, match=r"no report\.json"):
        estimate_project(tmp_path)


def test_cell_grouping_and_family():
    res = resources_from_cells({"LUT2": 10, "LUT6": 3, "INV": 2, "FDRE": 7, "FDSE": 1, "CARRY8": 4,
                                "MUXF7": 2, "DSP48E2": 1, "RAMB36E2": 2, "RAMB18E2": 3, "BUFG": 1})
    assert (res.lut, res.ff, res.dsp, res.bram, res.carry, res.muxf) == (15, 8, 1, 4, 4, 2)
    assert yosys_family("xcvu13p-flga2577-2-e") == "xcup"
    assert yosys_family("xcku115-flvb2104-2-e") == "xcu"
    assert yosys_family("xc7a100tcsg324-1") == "xc7"


def test_verilog_sources_of_project(project):
    files = rtl_verilog_sources(project[0] / "firmware")
    names = {Path(f).name for f in files}
    assert "fastml_model.v" in names and "shift_adder.v" in names


@pytest.mark.slow
@needs_yosys
def test_vhdl_project_is_synthesised_from_its_verilog_twin(project, estimated, tmp_path):
    from tiny_rtl import rtl_config

    from fastml.backends import convert
    from fastml.backends.rtl.estimate import rtl_yosys_resources

    _, _, trained, _ = project
    cfg = rtl_config(rtl_sim=False, flavor="vhdl")
    vhdl = convert(trained, cfg, tmp_path)
    assert not rtl_verilog_sources(vhdl.path)
    res = rtl_yosys_resources(vhdl.path, cfg.firmware.part)
    assert "Verilog twin" in res.note
    # same pipeline, same netlist as the Verilog project synthesised by estimate_project
    assert (res.lut, res.ff) == (estimated.resources["yosys"].lut, estimated.resources["yosys"].ff)
