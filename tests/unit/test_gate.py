"""Budget gates: every budget kind passing and failing, the "not run" rule, baseline regressions,
the renderers (JUnit XML parsed with ElementTree), and ``fastml check`` exit codes run in-process."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

import fastml.cli
from fastml.gate import GateResult, check_budgets, part_totals
from fastml.recipe import BudgetsConfig, BuildConfig
from fastml.report import Latency, Report, Resources, VerificationLevel, write_report


def make_report(name: str = "jet", lut: int = 1200, **budgets: Any) -> Report:
    """A report as a build would leave it: yosys + da4ml estimates, two verification levels, accuracies."""
    report = Report(name=name, backend="rtl", firmware={"part": "xcvu13p-flga2577-2-e", "clock_period_ns": 5.0})
    report.resources["da4ml_estimate"] = Resources(lut=lut - 100, ff=None, dsp=0, bram=0)
    report.resources["yosys"] = Resources(lut=lut, ff=400, dsp=0, bram=None)
    report.set_latency(Latency(cycles=6, ns=30.0, ii=1, source="da4ml_estimate"))
    report.verification["emulator"] = VerificationLevel(samples=1000, mismatches=0)
    report.verification["rtl_sim"] = VerificationLevel(samples=1000, mismatches=0)
    report.accuracy.float, report.accuracy.quantized, report.accuracy.firmware = 0.760, 0.752, 0.752
    report.budgets = BudgetsConfig(**budgets).model_dump(mode="json")
    return report


def row(result: GateResult, metric: str):
    matches = [r for r in result.rows if r.metric == metric]
    assert len(matches) == 1, [r.metric for r in result.rows]
    return matches[0]


def gate(report: Report, baseline: Report | None = None, **budgets: Any) -> GateResult:
    return check_budgets(report, BudgetsConfig(**budgets), baseline)


# ------------------------------------------------------------------------------- each budget kind


@pytest.mark.parametrize(
    ("budget", "metric", "passing", "failing"),
    [
        ("latency_cycles", "latency_cycles", 6, 5),
        ("latency_ns", "latency_ns", 30.0, 29.9),
        ("ii", "ii", 1, None),
        ("lut", "lut", 1200, 1199),
        ("ff", "ff", 400, 399),
        ("dsp", "dsp", 0, None),
        ("min_accuracy", "accuracy", 0.752, 0.753),
        ("max_accuracy_drop", "accuracy_drop", 0.008, 0.007),
        ("max_mismatches", "bit_exact_mismatches", 0, None),
    ],
)
def test_each_budget_passes_at_its_limit_and_fails_beyond(budget, metric, passing, failing):
    result = gate(make_report(), **{budget: passing})
    assert row(result, metric).status == "pass"
    assert result.passed
    if failing is not None:
        result = gate(make_report(), **{budget: failing})
        assert row(result, metric).status == "fail"
        assert not result.passed
        assert metric in result.summary()


def test_ii_and_dsp_and_mismatches_fail_when_exceeded():
    report = make_report()
    report.set_latency(Latency(cycles=6, ns=30.0, ii=4, source="da4ml_estimate"))
    report.resources["yosys"] = Resources(lut=1200, ff=400, dsp=3)
    report.verification["rtl_sim"] = VerificationLevel(samples=1000, mismatches=7)
    result = gate(report, ii=1, dsp=2, max_mismatches=5)
    assert [(r.metric, r.status) for r in result.rows] == [("ii", "fail"), ("dsp", "fail"),
                                                          ("bit_exact_mismatches", "fail")]
    mism = row(result, "bit_exact_mismatches")
    assert mism.value == 7 and mism.source.startswith("rtl_sim")


def test_only_set_budgets_are_checked_and_mismatches_default_to_zero():
    result = gate(make_report())
    assert [r.metric for r in result.rows] == ["bit_exact_mismatches"]
    assert row(result, "bit_exact_mismatches").budget == "<= 0"
    report = make_report()
    report.verification["emulator"] = VerificationLevel(samples=1000, mismatches=1)
    assert not gate(report).passed


def test_latency_ns_derived_from_cycles_says_so():
    report = make_report()
    report.set_latency(Latency(cycles=6, ii=1, source="da4ml_estimate"))
    r = row(gate(report, latency_ns=30), "latency_ns")
    assert r.value == pytest.approx(30.0) and r.status == "pass" and "cycles x 5.0 ns" in r.source


# ------------------------------------------------------------------------------- percent of part


def test_percent_budget_uses_the_part_totals():
    lut_total = part_totals("xcvu13p-flga2577-2-e")["lut"]
    assert lut_total == 1_728_000
    ok = row(gate(make_report(lut=1200), lut="0.1%"), "lut")  # limit 1728
    assert ok.status == "pass" and "xcvu13p" in ok.budget and "1728" in ok.budget
    bad = row(gate(make_report(lut=2000), lut="0.1%"), "lut")
    assert bad.status == "fail"


@pytest.mark.parametrize("part", ["xcvu13p-flga2577-2-e", "xcvu13p-fhga2104-3-e", "XCVU13P-FSGA2577-1-I",
                                  "xcvu9p-flga2104-2L-e", "xcu250-figd2104-2L-e", "xcku115-flvb2104-2-e",
                                  "xc7a100tcsg324-1"])
def test_part_table_knows_common_parts(part):
    totals = part_totals(part)
    assert totals is not None and set(totals) == {"lut", "ff", "dsp", "bram"}
    assert all(v > 0 for v in totals.values())


def test_part_table_distinguishes_families():
    assert part_totals("xcvu9p-flga2104-2L-e")["lut"] == 1_182_240
    assert part_totals("xc7a100t-csg324-1")["dsp"] == 240
    assert part_totals("xcku115")["lut"] != part_totals("xcku15p")["lut"]
    assert part_totals("xc9z999-unknown") is None


def test_unknown_part_with_percent_budget_fails_with_reason():
    report = make_report()
    report.firmware["part"] = "xc9z999-foo-1"
    r = row(gate(report, lut="10%"), "lut")
    assert r.status == "fail" and "xc9z999-foo-1" in r.reason and "not in fastml's part table" in r.reason
    report.firmware.pop("part")
    r = row(gate(report, lut="10%"), "lut")
    assert r.status == "fail" and "no part" in r.reason


def test_part_resources_override_the_table():
    report = make_report(lut=1200)
    report.firmware["part"] = "my-custom-part"
    result = check_budgets(report, BudgetsConfig(lut="50%"), part_resources={"lut": 2000, "ff": 1, "dsp": 1,
                                                                             "bram": 1})
    assert row(result, "lut").status == "fail"  # 1200 > 1000
    result = check_budgets(report, BudgetsConfig(lut="60%"), part_resources={"lut": 2000})
    assert row(result, "lut").status == "pass"


# ------------------------------------------------------------------------------- resource source / not run


def test_first_available_prefers_the_most_authoritative_source():
    report = make_report(lut=1200)
    assert row(gate(report, lut=5000), "lut").source == "yosys"  # yosys before da4ml_estimate
    report.resources["vivado"] = Resources(lut=900, ff=300)
    r = row(gate(report, lut=5000), "lut")
    assert (r.source, r.value) == ("vivado", 900)
    # a count the top source cannot give falls through to the next one
    assert row(gate(report, dsp=5), "dsp").source == "yosys"


def test_required_vivado_budget_without_vivado_is_not_run_and_fails():
    report = make_report(lut=100)
    result = gate(report, lut=5000, resource_source="vivado")
    r = row(result, "lut")
    assert r.status == "not run" and r.required and r.failed
    assert r.reason == "vivado not in report"
    assert r.status_text() == "not run: vivado not in report"
    assert not result.passed
    assert "not run: vivado not in report" in result.to_table()


def test_required_source_present_but_without_the_count_is_not_run():
    r = row(gate(make_report(), bram=10, resource_source="yosys"), "bram")
    assert r.status == "not run" and r.failed and "yosys gives no bram" in r.reason
    r = row(gate(make_report(), bram=10, resource_source="da4ml_estimate"), "bram")
    assert r.status == "pass" and r.source == "da4ml_estimate"


def test_no_source_at_all_is_not_run_and_fails():
    report = make_report()
    report.resources.clear()
    result = gate(report, lut=5000)
    assert row(result, "lut").status == "not run" and not result.passed


def test_report_without_any_verification_fails_mismatch_check():
    report = make_report()
    report.verification.clear()
    result = gate(report)
    r = row(result, "bit_exact_mismatches")
    assert r.status == "not run" and r.failed and "never checked" in r.reason
    assert not result.passed


def test_missing_latency_and_accuracy_are_not_run_failures():
    report = make_report()
    report.latency = Latency()
    report.latency_by_source.clear()
    report.accuracy.firmware = None
    result = gate(report, latency_cycles=100, ii=1, min_accuracy=0.1, max_accuracy_drop=0.5)
    for metric in ("latency_cycles", "ii", "accuracy", "accuracy_drop"):
        assert row(result, metric).status == "not run" and row(result, metric).failed, metric
    assert not result.passed


def test_failed_build_fails_the_gate():
    report = make_report()
    report.status = "failed"
    result = gate(report)
    assert row(result, "build").status == "fail" and not result.passed


# ------------------------------------------------------------------------------- baseline regressions


def test_regression_within_and_beyond_the_limit():
    baseline = make_report(lut=1000)
    exactly = gate(make_report(lut=1050), baseline, lut=5000, max_regression={"lut": "5%"})
    r = row(exactly, "lut regression")
    assert r.status == "pass" and r.baseline == 1000 and r.change == "+5.0%"
    assert row(exactly, "lut").change == "+5.0%" and row(exactly, "lut").baseline == 1000
    beyond = gate(make_report(lut=1060), baseline, lut=5000, max_regression={"lut": "5%"})
    r = row(beyond, "lut regression")
    assert r.status == "fail" and not beyond.passed and "+6.0%" in r.reason
    assert row(beyond, "lut").status == "pass"  # absolute budget still fine: only the regression fails
    improved = gate(make_report(lut=500), baseline, max_regression={"lut": "0%"})
    assert row(improved, "lut regression").status == "pass"
    assert row(improved, "lut regression").change == "-50.0%"


def test_accuracy_regresses_when_it_falls():
    baseline = make_report()
    worse = make_report()
    worse.accuracy.firmware = 0.70
    assert row(gate(worse, baseline, max_regression={"accuracy": "5%"}), "accuracy regression").status == "fail"
    better = make_report()
    better.accuracy.firmware = 0.80
    assert row(gate(better, baseline, max_regression={"accuracy": "0%"}), "accuracy regression").status == "pass"


def test_latency_regression_and_growth_from_zero():
    baseline = make_report()
    slower = make_report()
    slower.set_latency(Latency(cycles=7, ns=35.0, ii=1, source="da4ml_estimate"))
    assert row(gate(slower, baseline, max_regression={"latency_cycles": "10%"}),
               "latency_cycles regression").status == "fail"  # +16.7 %
    dsp = make_report()
    dsp.resources["yosys"] = Resources(lut=1200, ff=400, dsp=2)
    r = row(gate(dsp, baseline, max_regression={"dsp": "50%"}), "dsp regression")
    assert r.status == "fail" and r.change == "+inf%"


def test_regression_compares_the_same_source():
    baseline = make_report(lut=1000)  # yosys 1000, da4ml 900
    current = make_report(lut=1000)
    current.resources["vivado"] = Resources(lut=5000)  # only the current report has vivado
    r = row(gate(current, baseline, max_regression={"lut": "1%"}), "lut regression")
    assert r.source == "yosys" and r.status == "pass"
    r = row(gate(current, baseline, max_regression={"lut": "1%"}, resource_source="vivado"), "lut regression")
    assert r.status == "not run" and r.failed and "both report and baseline" in r.reason


def test_regression_without_baseline_is_not_run_but_not_a_failure():
    result = gate(make_report(), max_regression={"lut": "5%"})
    r = row(result, "lut regression")
    assert r.status == "not run" and not r.required and not r.failed
    assert result.passed
    assert "1 optional check(s) not run" in result.summary()


def test_unknown_regression_metric_fails():
    r = row(gate(make_report(), make_report(), max_regression={"luts": "5%"}), "luts regression")
    assert r.status == "fail" and "unknown metric" in r.reason


def test_baseline_shows_changes_of_every_metric():
    result = gate(make_report(lut=1100), make_report(lut=1000))
    changes = {c.metric: c for c in result.changes}
    assert changes["lut"].change == "+10.0%" and changes["lut"].source == "yosys"
    assert {"ff", "latency_cycles", "ii", "accuracy"} <= set(changes)
    assert "change vs baseline" in result.to_table() and "+10.0%" in result.to_markdown()


# ------------------------------------------------------------------------------- renderers


def test_junit_xml_one_testcase_per_budget_with_failure_counts():
    report = make_report(lut=1200)
    report.verification.clear()  # required check not run -> failure
    result = check_budgets(report, BudgetsConfig(lut=1000, ff=5000, latency_cycles=10, resource_source="yosys",
                                                 max_regression={"ff": "1%"}))
    root = ET.fromstring(result.to_junit_xml())
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [r.metric for r in result.rows]
    assert len(cases) == 5  # latency_cycles, lut, ff, bit_exact_mismatches, ff regression
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"lut", "bit_exact_mismatches"}
    skipped = {c.get("name") for c in cases if c.find("skipped") is not None}
    assert skipped == {"ff regression"}  # optional: no baseline
    assert int(suite.get("tests")) == 5 and int(suite.get("failures")) == 2 and int(suite.get("skipped")) == 1
    not_run = next(c for c in cases if c.get("name") == "bit_exact_mismatches").find("failure")
    assert not_run.get("type") == "not run" and "not run" in not_run.get("message")


def test_junit_xml_never_hides_a_required_not_run_as_skipped():
    result = gate(make_report(), lut=10, resource_source="vivado")
    root = ET.fromstring(result.to_junit_xml())
    case = next(c for c in root.iter("testcase") if c.get("name") == "lut")
    assert case.find("failure") is not None and case.find("skipped") is None


def test_markdown_and_json():
    result = gate(make_report(lut=1200), make_report(lut=1000), lut=1000)
    md = result.to_markdown()
    assert md.startswith("### fastml check: `jet` — ❌ failed")
    assert "| metric | value | budget | source | status | baseline | change |" in md
    assert "| lut | 1200 | <= 1000 | yosys | ❌ fail: 1200 > 1000 | 1000 | +20.0% |" in md
    doc = json.loads(result.to_json())
    assert doc["passed"] is False and doc["baseline"] == "jet"
    lut = next(r for r in doc["rows"] if r["metric"] == "lut")
    assert lut["status"] == "fail" and lut["failed"] is True and lut["value"] == 1200


def test_table_columns():
    text = gate(make_report(), lut=5000).to_table()
    lines = text.splitlines()
    assert lines[1].split() == ["metric", "value", "budget", "source", "status"]
    assert lines[-1].startswith("PASSED: jet")


# ------------------------------------------------------------------------------- fastml check (CLI)


@pytest.fixture
def cli(monkeypatch):
    """``fastml.cli.main`` in-process; command modules other engineers have not written yet are left out."""
    present = tuple(m for m in fastml.cli.COMMAND_MODULES if importlib.util.find_spec(m) is not None)
    monkeypatch.setattr(fastml.cli, "COMMAND_MODULES", present)
    return fastml.cli.main


def write_project(root: Path, report: Report) -> Path:
    project = root / "hls_projects" / report.name
    write_report(report, project)
    return project


def recorded_budgets(**budgets: Any) -> Report:
    """The budgets as a build records them: parsed from the YAML recipe, dumped into the report."""
    cfg = BuildConfig.model_validate({"name": "jet", "data": {"source": "builtin:jets"}, "budgets": budgets})
    report = make_report(lut=1200)
    report.budgets = cfg.budgets.model_dump(mode="json")
    return report


def test_firmware_over_its_lut_budget_exits_nonzero_within_budget_exits_zero(cli, tmp_path, capsys):
    over = write_project(tmp_path / "over", recorded_budgets(lut=1000))
    assert cli(["check", str(over)]) == 1
    out = capsys.readouterr().out
    assert "lut" in out and "fail: 1200 > 1000" in out and "FAILED: jet" in out
    within = write_project(tmp_path / "within", recorded_budgets(lut=5000))
    assert cli(["check", str(within / "report.json")]) == 0
    assert "PASSED: jet" in capsys.readouterr().out


def test_check_writes_junit_markdown_json(cli, tmp_path):
    project = write_project(tmp_path, recorded_budgets(lut=1000, ff=5000))
    junit, md, js = tmp_path / "out" / "j.xml", tmp_path / "out" / "s.md", tmp_path / "r.json"
    assert cli(["check", str(project), "--junit", str(junit), "--markdown", str(md), "--json", str(js)]) == 1
    cases = ET.parse(junit).getroot().findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == ["lut", "ff", "bit_exact_mismatches"]
    assert sum(c.find("failure") is not None for c in cases) == 1
    assert "❌ failed" in md.read_text()
    assert json.loads(js.read_text())["passed"] is False


def test_check_budgets_file_overrides_recorded_budgets(cli, tmp_path, capsys):
    project = write_project(tmp_path, recorded_budgets(lut=1000))
    plain = tmp_path / "budgets.yaml"
    plain.write_text("lut: 2000\nresource_source: yosys\n")
    assert cli(["check", str(project), "--budgets", str(plain)]) == 0
    full = tmp_path / "config.yaml"  # a whole build recipe: its budgets section is used
    full.write_text("name: jet\nfirmware: {part: xcvu9p-flga2104-2L-e}\nbudgets:\n  lut: '0.05%'\n")
    assert cli(["check", str(project), "--budgets", str(full)]) == 1  # 0.05% of xcvu13p = 864
    assert "fail: 1200 > 864" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "expected"), [
    ("lut: lots\n", "key 'lut': expected a count"),
    ("budgets:\n  luts: 10\n", "unknown key 'budgets.luts'"),
    ("max_regression: {lut: 5}\n", "max_regression"),
    ("max_regression: {luts: '5%'}\n", "key 'max_regression.luts': unknown metric"),
    ("lut: [1\n", "not valid YAML"),
    ("- 1\n", "expected a YAML mapping"),
])
def test_bad_budgets_yaml_is_one_line_error(cli, tmp_path, capsys, text, expected):
    project = write_project(tmp_path, recorded_budgets())
    bad = tmp_path / "b.yaml"
    bad.write_text(text)
    assert cli(["check", str(project), "--budgets", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastml: error: {bad}") and expected in err
    assert len(err.strip().splitlines()) == 1


def test_check_missing_report_is_error(cli, tmp_path, capsys):
    assert cli(["check", str(tmp_path / "nothing")]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_check_with_baseline_folder(cli, tmp_path, capsys):
    budgets = {"lut": 5000, "max_regression": {"lut": "5%"}}
    project = write_project(tmp_path / "mr", recorded_budgets(**budgets))  # lut 1200
    base_report = recorded_budgets(**budgets)
    base_report.resources["yosys"] = Resources(lut=1000, ff=400, dsp=0)
    base_root = write_project(tmp_path / "main", base_report).parent  # hls_projects/ of the default branch
    assert cli(["check", str(project), "--baseline", str(base_root)]) == 1
    out = capsys.readouterr().out
    assert "lut regression" in out and "+20.0%" in out
    assert cli(["check", str(project), "--baseline", str(tmp_path / "nowhere")]) == 2
    assert cli(["check", str(project), "--baseline", str(tmp_path / "nowhere"), "--allow-missing-baseline"]) == 0
