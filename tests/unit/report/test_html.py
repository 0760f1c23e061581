"""report.html: self-contained, every figure equal to report.json's, every section honest about what did not run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from html_page import lookup, mismatched_figures, page_figures, sample_project, sample_scan, shows

from fastml.pipeline import write_html_report
from fastml.report import Report, load_report
from fastml.report.html import budget_margin, render_html, write_html


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Report, str]:
    project, report = sample_project(tmp_path_factory.mktemp("html"))
    page = write_html_report(project, report).read_text()
    return project, report, page


def test_every_figure_on_the_page_is_report_json_s(sample: tuple[Path, Report, str]) -> None:
    project, _, page = sample
    doc = json.loads((project / "report.json").read_text())
    keys = {k for k, _ in page_figures(page)}
    # the headline figures of every section are marked, so the comparison covers them
    for key in ("accuracy.firmware", "verification.rtl_sim.mismatches", "resources.yosys.lut",
                "latency_by_source.da4ml.cycles", "layers.rows.1.lut", "layers.total_lut", "auc.firmware.g",
                "timings_s.convert.trace", "ebops"):
        assert key in keys, key
    assert mismatched_figures(page, doc) == []


def test_the_number_check_catches_a_wrong_figure(sample: tuple[Path, Report, str]) -> None:
    project, _, page = sample
    doc = json.loads((project / "report.json").read_text())
    doc["resources"]["yosys"]["lut"] += 1
    doc["accuracy"]["firmware"] = 0.7433  # 74.33 % where the page shows 74.31 %
    bad = mismatched_figures(page, doc)
    assert any(b.startswith("resources.yosys.lut") for b in bad) and any(b.startswith("accuracy.firmware") for b in bad)
    assert shows("74.31 %", 0.7431) and not shows("74.31 %", 0.7433) and shows("not run", None)
    assert lookup({"timings_s": {"convert.trace": 4.3}}, "timings_s.convert.trace") == 4.3


def test_page_is_self_contained(sample: tuple[Path, Report, str]) -> None:
    _, _, page = sample
    # nothing from elsewhere: no URL in any src/href, images inline, and a policy that forbids loading any
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "default-src 'none'" in page and page.count('src="data:image/png;base64,') >= 4  # ROC, costs, layers, ...
    assert "http://" not in page.replace("http-equiv", "") and "https://" not in page


def test_sections_show_what_the_report_holds(sample: tuple[Path, Report, str]) -> None:
    _, report, page = sample
    for title in ("Checks and budgets", "Bit-exactness per level", "Accuracy", "Float edges made explicit",
                  "Latency and resources per source", "Where the LUTs go (per layer)", "Training front",
                  "Wall time per stage"):
        assert f"<h2>{title}</h2>" in page, title
    assert "input quantiser ap_fixed&lt;16,6&gt;" in page and "+0.81 points" in page  # float edges and their cost
    assert "xcvu13p-flga2577-2-e" in page and "5 ns" in page and report.config_hash[:16] in page
    # the gate on the report's own budgets, with the room left to each
    assert "<td>&lt;= 5000</td>" in page and "+2,591 (+51.8% of the budget)" in page
    assert "&amp;lt;" not in page and "&amp;gt;" not in page  # escaped once, shown as typed
    assert "ff per layer: per pipeline stage only" in page
    assert "verify.compiled_emulator is false" in page
    embedded = re.search(r'<script type="application/json" id="report-json">(.*?)</script>', page, re.S)
    assert embedded is not None and json.loads(embedded.group(1))["name"] == report.name


def test_a_missing_figure_reads_not_run_with_its_reason(tmp_path: Path) -> None:
    report = Report(name="bare", backend="conifer")
    report.layers = {"not_run": "not run: backend 'conifer' gives no per-layer costs yet"}
    page = render_html(report, tmp_path)
    assert "backend &#x27;conifer&#x27; gives no per-layer costs yet" in page
    assert "no verification level ran" in page and "model/verify_inputs.npz" in page
    assert 'data-key="accuracy.firmware">not run<' in page
    old = render_html(Report(name="old", backend="rtl"))  # a report from before report.layers
    assert "no per-layer figures in this report" in old
    failed = Report(name="f", backend="rtl", status="failed")
    assert "fastml diagnose" in render_html(failed)  # no diagnosis yet: the page says how to get one


def test_diagnosis_is_shown_when_the_build_was_not_bit_exact(tmp_path: Path) -> None:
    report = Report(name="f", backend="hls4ml", status="failed")
    diagnosis = {"backend": "hls4ml", "firmware": "csim", "reference": "quantized model", "events": 100,
                 "first_divergent_layer": "dense_1", "cause": "saturation", "hint": "widen the accumulator",
                 "layers": [{"name": "dense_0", "operation": "Dense", "status": "match", "elements": 8},
                            {"name": "dense_1", "operation": "Dense", "status": "diverges", "elements": 5,
                             "mismatched_elements": 37, "mismatched_events": 20}]}
    page = render_html(report, diagnosis=diagnosis)
    assert "First divergent layer:</b> dense_1" in page and "widen the accumulator" in page
    assert '<td class="worse">dense_1</td>' in page


def test_text_from_the_report_is_escaped(tmp_path: Path) -> None:
    report = Report(name="<script>alert(1)</script>", backend="rtl")
    report.model = {"selection": {"float_edges": [{"where": "</script><b>", "edge": "input", "choice": "x"}]}}
    page = render_html(report)
    assert "<script>alert(1)" not in page and "</script><b>" not in page


def test_budget_margin() -> None:
    assert budget_margin({"value": 900, "budget": "<= 1000"}) == "+100 (+10.0% of the budget)"
    assert budget_margin({"value": 0.7, "budget": ">= 0.75"}).startswith("-0.05")
    assert budget_margin({"value": 50000, "budget": "<= 5% of xcvu9p (59112)"}).startswith("+9,112")
    assert budget_margin({"value": None, "budget": "<= 3"}) == ""


def test_baseline_side_by_side_highlights_changes(sample: tuple[Path, Report, str], tmp_path: Path) -> None:
    project, report, _ = sample
    old = report.model_copy(deep=True)
    old.resources["yosys"].lut = 2000  # the new build costs more: red
    old.accuracy.firmware = 0.70  # and is more accurate: green
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "report.json").write_text(old.model_dump_json())
    from fastml.cli import main

    out = tmp_path / "cmp.html"
    assert main(["report", str(project), "--baseline", str(tmp_path / "old"), "--out", str(out)]) == 0
    page = out.read_text()
    assert "Compared with the baseline" in page
    row = re.search(r"<tr><td>resources\.yosys\.lut</td>(.*?)</tr>", page).group(1)
    assert 'class="n worse"' in row and "+409" in row
    row = re.search(r"<tr><td>accuracy\.firmware</td>(.*?)</tr>", page).group(1)
    assert 'class="n better"' in row
    assert "What <code>fastml check --baseline</code> compares" in page


def test_report_command_rerenders_and_a_failed_render_keeps_the_old_page(
        sample: tuple[Path, Report, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from fastml.cli import main

    project = tmp_path / "p"
    shutil.copytree(sample[0], project)
    (project / "report.html").unlink()
    assert main(["report", str(project)]) == 0
    before = (project / "report.html").read_text()
    assert mismatched_figures(before, json.loads((project / "report.json").read_text())) == []

    def broken(*_a: object, **_k: object) -> str:
        raise RuntimeError("render failed")

    monkeypatch.setattr("fastml.report.html.render_html", broken)
    with pytest.raises(RuntimeError):
        write_html(load_report(project), project)
    assert (project / "report.html").read_text() == before
    assert sorted(p.name for p in project.iterdir() if p.name.startswith(".")) == []  # no half-written file
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing" in err[0] and "report.json" in err[0]


def test_scan_page_links_points_to_their_reports(tmp_path: Path) -> None:
    page = sample_scan(tmp_path).read_text()
    href = "../projects/p0/report.html"
    assert f'<td><a href="{href}">report</a></td>' in page  # the table
    assert page.count(f'href="{href}"') >= 3  # and a point in each of the two fronts (SVG links)
    assert "projects/p1/report.html" not in page  # no page built: no link to nothing
    assert '<table class="sortable">' in page and "accuracy vs lut" in page and "accuracy vs latency" in page
    rows = json.loads(re.search(r'id="report-json">(.*?)</script>', page, re.S).group(1))
    assert rows["rows"][1]["latency_ns"] is None  # NaN in the table: "not run" on the page, null in its data
    assert mismatched_figures(page, rows) == []
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|//)""", page)
