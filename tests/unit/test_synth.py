"""Vendor synthesis stage: parsers checked field by field against real tool reports (tests/fixtures/synth,
see SOURCES.md there), the CLI on projects holding those reports, and the no-tool / failing-tool / timeout
paths with fake ``vivado`` / ``vitis_hls`` scripts (no real Xilinx tool is needed or used)."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from fastml.cli import main
from fastml.errors import FastmlError
from fastml.report import Latency, Report, Resources, load_report, write_report
from fastml.synth import (
    collect_reports,
    find_vendor_tools,
    fold_into_report,
    parse_csynth_xml,
    parse_vivado_timing,
    parse_vivado_utilization,
    plan_steps,
    run_synth,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "synth"
VITIS_2024_XML = FIXTURES / "vitis_hls_2024.1_myproject_csynth.xml"
VIVADO_HLS_2019_XML = FIXTURES / "vivado_hls_2019.2_myproject_csynth.xml"
UTIL_2024 = FIXTURES / "vivado_2024.1_vivado_synth.rpt"
UTIL_2020 = FIXTURES / "vivado_2020.1_vivado_synth.rpt"
TIMING_2021 = FIXTURES / "vivado_2021.2_timing_summary_place.rpt"
NO_TOOLS_ENV = {"XILINX_VITIS": "", "XILINX_VIVADO": "", "XILINX_HLS": ""}


# ------------------------------------------------------------------------------------------ parsers


def test_csynth_xml_vitis_hls_2024() -> None:
    lat, res = parse_csynth_xml(VITIS_2024_XML)
    assert (lat.cycles, lat.best_cycles, lat.worst_cycles, lat.ii, lat.interval_min) == (184, 183, 184, 128, 128)
    assert lat.source == "vitis_hls"
    assert lat.target_clock_ns == 5.0 and lat.estimated_clock_ns == 3.635
    assert lat.ns == pytest.approx(920.0)  # 184 cycles x 5 ns; the report prints 0.920 us
    assert lat.tool_version == "2024.1"
    assert (res.lut, res.ff, res.dsp, res.bram, res.uram) == (449837, 495589, 471, 5, 0)
    assert res.available == {"lut": 1728000, "ff": 3456000, "dsp": 12288, "bram": 5376, "uram": 1280}
    assert res.part == "xcu250-figd2104-2L-e"


def test_csynth_xml_vivado_hls_2019_dsp48e_and_interval_range() -> None:
    lat, res = parse_csynth_xml(VIVADO_HLS_2019_XML)
    assert (lat.cycles, lat.best_cycles, lat.ii, lat.interval_min) == (96165, 96014, 95949, 4625)
    assert lat.ns == pytest.approx(96165 * 5.0) and lat.estimated_clock_ns == 4.429
    assert lat.tool_version == "2019.2.1"
    assert (res.lut, res.ff, res.dsp, res.bram, res.uram) == (33365, 51414, 118, 285, 0)  # DSP from <DSP48E>
    assert res.available == {"lut": 53200, "ff": 106400, "dsp": 220, "bram": 280, "uram": 0}
    assert res.part == "xc7z020-clg400-1"


def test_utilization_vivado_2024_with_prohibited_column() -> None:
    res = parse_vivado_utilization(UTIL_2024)
    assert (res.lut, res.ff, res.dsp, res.uram) == (306396, 377196, 469, 0)
    assert res.bram_tile == 2 and res.bram == 4  # 2 x 36 Kb tiles = 4 x BRAM_18K (the report: RAMB18 4)
    assert res.available == {"lut": 1728000, "ff": 3456000, "dsp": 12288, "uram": 1280, "bram": 5376}
    assert res.device == "xcu250-figd2104-2L-e" and res.design_state == "Optimized" and res.design == "myproject"
    assert res.tool_version.startswith("Vivado v.2024.1")


def test_utilization_vivado_2020_fractional_bram_tile() -> None:
    res = parse_vivado_utilization(UTIL_2020)
    assert (res.lut, res.ff, res.dsp, res.uram) == (31277, 4555, 0, None)  # no URAM row on this part
    assert res.bram_tile == 0.5 and res.bram == 1
    assert res.available == {"lut": 274080, "ff": 548160, "dsp": 2520, "uram": None, "bram": 1824}
    assert res.device == "xczu9egffvb1156-2" and res.design_state == "Synthesized"
    assert res.tool_version.startswith("Vivado v.2020.1")


def test_timing_summary_vivado_2021() -> None:
    t = parse_vivado_timing(TIMING_2021)
    assert (t["wns_ns"], t["tns_ns"], t["tns_failing_endpoints"]) == (2.479, 0.0, 0)
    assert (t["whs_ns"], t["ths_ns"], t["wpws_ns"]) == (0.022, 0.0, 2.225)
    assert (t["clock"], t["clock_period_ns"], t["clock_mhz"]) == ("clk", 5.0, 200.0)
    assert t["achieved_period_ns"] == pytest.approx(2.521)
    assert t["fmax_mhz"] == pytest.approx(1000 / 2.521, rel=1e-4)
    assert t["timing_met"] is True
    assert t["device"] == "xczu3eg-sbva484" and t["tool_version"].startswith("Vivado v.2021.2")


@pytest.mark.parametrize("parser", [parse_csynth_xml, parse_vivado_utilization, parse_vivado_timing])
def test_parsers_reject_other_files_in_one_line(parser, tmp_path: Path) -> None:
    wrong = tmp_path / "notes.txt"
    wrong.write_text("<profile><x/></profile>\n| Site Type | Used |\n")
    with pytest.raises(FastmlError) as err:
        parser(wrong)
    assert str(wrong) in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------ projects


def _project(root: Path, name: str, backend: str) -> Path:
    """A built-project folder as ``fastml build`` leaves it, with an estimate already in the report."""
    project = root / name
    (project / "firmware").mkdir(parents=True)
    report = Report(name=name, backend=backend)  # type: ignore[arg-type]
    report.resources["da4ml_estimate"] = Resources(lut=1000, ff=200, dsp=0, bram=0)
    report.set_latency(Latency(cycles=7, ns=35.0, ii=1, source="da4ml_estimate"))
    write_report(report, project)
    return project


def _tool(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def tool_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """PATH = an empty bin folder (fake tools go there) + /bin:/usr/bin; no $XILINX_* variables."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    for var in NO_TOOLS_ENV:
        monkeypatch.delenv(var, raising=False)
    return bin_dir


def test_from_reports_fills_vendor_fields_next_to_estimates(tmp_path: Path, capsys) -> None:
    project = _project(tmp_path, "jet_hls", "hls4ml")
    report_dir = project / "firmware" / "myproject_prj" / "solution1" / "syn" / "report"
    report_dir.mkdir(parents=True)
    shutil.copy(VITIS_2024_XML, report_dir / "myproject_csynth.xml")
    shutil.copy(UTIL_2024, project / "firmware" / "vivado_synth.rpt")

    assert main(["synth", str(project), "--from-reports"]) == 0
    report = load_report(project)
    assert report.resources["da4ml_estimate"].lut == 1000  # the estimate stays, side by side
    viv, hls = report.resources["vivado"], report.resources["vitis_hls"]
    assert (viv.lut, viv.ff, viv.dsp, viv.bram) == (306396, 377196, 469, 4)
    assert viv.report == "firmware/vivado_synth.rpt" and viv.stage == "post_synth"
    assert (hls.lut, hls.ff, hls.dsp, hls.bram) == (449837, 495589, 471, 5)
    assert report.latency.source == "vitis_hls"  # more authoritative than the estimate
    assert (report.latency.cycles, report.latency.ii, report.latency.ns) == (184, 128, 920.0)
    assert report.latency_by_source["da4ml_estimate"].cycles == 7
    assert report.checks["synth"] == "pass"
    assert "jet_hls: ok" in capsys.readouterr().out
    assert "| vivado | 306396 | 377196 | 469 | 4 |" in (project / "report.md").read_text()


def test_from_reports_rtl_layout_with_timing(tmp_path: Path) -> None:
    project = _project(tmp_path, "jet_rtl", "rtl")
    reports = project / "firmware" / "output_model" / "reports"
    reports.mkdir(parents=True)
    shutil.copy(UTIL_2020, reports / "model_post_route_util.rpt")
    shutil.copy(TIMING_2021, reports / "model_post_route_timing.rpt")

    assert main(["synth", str(project), "--from-reports"]) == 0
    report = load_report(project)
    assert (report.resources["vivado"].lut, report.resources["vivado"].bram) == (31277, 1)
    assert report.resources["vivado"].stage == "post_route"
    assert report.synth["timing"]["wns_ns"] == 2.479
    assert report.checks["vivado_timing"] == "pass"
    assert "vitis_hls" not in report.resources and report.latency.source == "da4ml_estimate"


def test_from_reports_with_no_reports_says_not_run(tmp_path: Path) -> None:
    project = _project(tmp_path, "empty", "rtl")
    assert main(["synth", str(project), "--from-reports"]) == 3
    report = load_report(project)
    assert report.checks["synth"].startswith("not run: no Vivado / Vitis HLS reports")
    assert set(report.resources) == {"da4ml_estimate"}


def test_no_tools_says_not_run_and_exits_3(tmp_path: Path, tool_path: Path, capsys) -> None:
    hls = _project(tmp_path, "a_hls", "hls4ml")
    (hls / "firmware" / "build_prj.tcl").write_text("# hls4ml build script\n")
    rtl = _project(tmp_path, "b_rtl", "rtl")
    (rtl / "firmware" / "build_vivado_prj.tcl").write_text("# da4ml build script\n")

    assert main(["synth", str(hls), str(rtl), "--jobs", "2"]) == 3
    out, err = capsys.readouterr()
    assert "not run: vitis_hls not found" in out and "not run: vivado not found" in out
    assert "not run" in err and "no numbers were written" in err
    assert load_report(hls).checks["synth"] == "not run: vitis_hls not found"
    assert load_report(rtl).checks["synth"] == "not run: vivado not found"
    for project in (hls, rtl):
        assert set(load_report(project).resources) == {"da4ml_estimate"}  # nothing invented
        assert not (project / "logs").exists()


def test_vsynth_without_vivado_is_not_run_even_with_vitis_hls(tmp_path: Path, tool_path: Path) -> None:
    _tool(tool_path, "vitis_hls", "exit 0")
    project = _project(tmp_path, "hls", "hls4ml")
    (project / "firmware" / "build_prj.tcl").write_text("#\n")
    result = run_synth(project, ["csynth", "vsynth"], 60, "hls4ml")
    assert result.status == "not run: vivado not found"


@pytest.mark.skipif(any(find_vendor_tools().values()), reason="a Xilinx tool is installed on this machine")
def test_this_machine_has_no_vendor_tools(tmp_path: Path) -> None:
    project = _project(tmp_path, "here", "rtl")
    (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")
    assert main(["synth", str(project)]) == 3
    assert load_report(project).checks["synth"] == "not run: vivado not found"


def test_failing_vivado_fails_the_stage_and_keeps_the_log(tmp_path: Path, tool_path: Path, capsys) -> None:
    _tool(tool_path, "vivado", 'echo "ERROR: [Synth 8-439] module \'model\' not found"\nexit 1')
    project = _project(tmp_path, "rtl", "rtl")
    (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")

    assert main(["synth", str(project)]) == 1
    report = load_report(project)
    assert report.checks["synth"].startswith("fail: vivado exited with 1")
    assert "logs/synth_vivado.log" in report.checks["synth"]
    log = (project / "logs" / "synth_vivado.log").read_text()
    assert "Synth 8-439" in log and "-source build_vivado_prj.tcl" in log
    assert "vivado" not in report.resources
    assert "1 of 1 project(s) failed" in capsys.readouterr().err


def test_hanging_vivado_is_killed_at_the_timeout(tmp_path: Path, tool_path: Path) -> None:
    _tool(tool_path, "vivado", 'echo started\nsleep 60 &\necho $! > "$PWD/child.pid"\nwait')
    project = _project(tmp_path, "slow", "rtl")
    (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")

    t0 = time.perf_counter()
    assert main(["synth", str(project), "--timeout", "1"]) == 1
    assert time.perf_counter() - t0 < 15
    report = load_report(project)
    assert report.checks["synth"].startswith("fail: vivado timed out after")
    assert "started" in (project / "logs" / "synth_vivado.log").read_text()
    child = int((project / "firmware" / "child.pid").read_text())
    time.sleep(0.2)
    status = Path(f"/proc/{child}/status")
    assert not status.exists() or "State:\tZ" in status.read_text()  # the tool's child died with it


def test_successful_tool_run_parses_only_fresh_reports(tmp_path: Path, tool_path: Path) -> None:
    _tool(tool_path, "vivado",
          f"mkdir -p output_model/reports\ncp {UTIL_2024} output_model/reports/model_post_route_util.rpt\n"
          f"cp {TIMING_2021} output_model/reports/model_post_route_timing.rpt")
    project = _project(tmp_path, "ok", "rtl")
    (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")
    stale = project / "firmware" / "old" / "x_post_synth_util.rpt"
    stale.parent.mkdir()
    shutil.copy(UTIL_2020, stale)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    result = run_synth(project, ["vsynth"], 60, "rtl")
    assert result.status == "ok", result.message
    assert result.resources["vivado"].lut == 306396  # the fresh post-route report, not the stale one
    assert result.timing["wns_ns"] == 2.479
    report = fold_into_report(load_report(project), result)
    assert report.checks["synth"] == "pass" and report.timings_s["synth"] >= 0
    assert report.synth["logs"] == ["logs/synth_vivado.log"]


def test_tool_exiting_0_without_reports_fails(tmp_path: Path, tool_path: Path) -> None:
    _tool(tool_path, "vivado", "exit 0")
    project = _project(tmp_path, "silent", "rtl")
    (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")
    result = run_synth(project, ["vsynth"], 60, "rtl")
    assert result.status == "failed" and "wrote no" in result.message


def test_parallel_jobs_one_failure_does_not_stop_the_other(tmp_path: Path, tool_path: Path, capsys) -> None:
    _tool(tool_path, "vivado",
          "if [ -f fail_me ]; then echo broken; exit 2; fi\n"
          f"mkdir -p output_model/reports\ncp {UTIL_2020} output_model/reports/model_post_route_util.rpt")
    good, bad = _project(tmp_path, "good", "rtl"), _project(tmp_path, "bad", "rtl")
    for project in (good, bad):
        (project / "firmware" / "build_vivado_prj.tcl").write_text("#\n")
    (bad / "firmware" / "fail_me").write_text("")

    assert main(["synth", str(good), str(bad), "--jobs", "2", "--stages", "vsynth"]) == 1
    out = capsys.readouterr().out
    assert "good: ok" in out and "bad: failed" in out and "[2/2]" in out
    assert load_report(good).resources["vivado"].lut == 31277
    assert load_report(bad).checks["synth"].startswith("fail: vivado exited with 2")


def test_hls4ml_build_options_and_command(tmp_path: Path, tool_path: Path) -> None:
    _tool(tool_path, "vitis_hls", 'echo "$@" > args.txt\nexit 1')
    project = _project(tmp_path, "hls", "hls4ml")
    (project / "firmware" / "build_prj.tcl").write_text("#\n")
    result = run_synth(project, ["csynth", "export"], 60, "hls4ml")
    assert result.status == "failed"
    opts = (project / "firmware" / "build_opt.tcl").read_text()
    assert "synth      1" in opts and "export     1" in opts and "cosim      0" in opts and "vsynth     0" in opts
    args = (project / "firmware" / "args.txt").read_text().split()
    assert args[:2] == ["-f", "build_prj.tcl"] and "synth=1" in args and "export=1" in args


def test_conifer_xilinxhls_plan_adds_vivado_for_vsynth(tmp_path: Path) -> None:
    project = _project(tmp_path, "bdt", "conifer")
    (project / "firmware" / "build_hls.tcl").write_text("#\n")
    steps = plan_steps(project, "conifer", ["csynth", "vsynth"], {"vitis_hls": "/x/vitis_hls", "vivado": "/x/vivado"})
    assert [s.tool for s in steps] == ["vitis_hls", "vivado"]
    assert "synth      1" in (project / "firmware" / "build_opt.tcl").read_text()


def test_missing_report_json_is_one_line_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "nothing").mkdir()
    assert main(["synth", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "no report.json" in err and err.count("\n") == 1


def test_bad_stage_is_one_line_error(tmp_path: Path, capsys) -> None:
    project = _project(tmp_path, "p", "rtl")
    assert main(["synth", str(project), "--stages", "csynth,place"]) == 2
    assert "expected a comma-separated subset of csynth,cosim,export,vsynth" in capsys.readouterr().err


def test_find_vendor_tools_looks_in_xilinx_env_dirs(tmp_path: Path) -> None:
    _tool(tmp_path / "Vivado" / "bin", "vivado", "exit 0")
    _tool(tmp_path / "Vitis" / "bin", "vitis_hls", "exit 0")
    found = find_vendor_tools({"PATH": "", "XILINX_VIVADO": str(tmp_path / "Vivado"),
                               "XILINX_VITIS": str(tmp_path / "Vitis")})
    assert found["vivado"] == str(tmp_path / "Vivado" / "bin" / "vivado")
    assert found["vitis_hls"] == str(tmp_path / "Vitis" / "bin" / "vitis_hls")
    assert found["vitis_run"] is None


def test_collect_reports_without_firmware(tmp_path: Path) -> None:
    assert collect_reports(tmp_path).status.startswith("not run: no firmware folder")
