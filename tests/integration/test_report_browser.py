"""report.html in a real browser: headless Chromium opens the page from disk with the network disabled; the page
logs nothing to the console, asks for nothing outside itself, shows report.json's numbers after its scripts ran,
and renders to a screenshot. Skipped, saying so, where Chromium is not installed (``scripts/bootstrap.sh`` installs
Debian's ``chromium`` when run as root)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from html_page import chromium, load_in_chromium, mismatched_figures, sample_project, sample_scan

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

pytestmark = pytest.mark.skipif(chromium() is None, reason="skipped: no chromium (apt-get install chromium)")


def assert_page_ok(project: Path, workdir: Path) -> Path:
    """Every promise of the page, checked in Chromium; returns the screenshot."""
    shot = workdir / "report.png"
    dom, console, requests = load_in_chromium(project / "report.html", workdir, screenshot=shot)
    assert console == [], console
    assert requests == [], requests
    assert 'data-ready="1"' in dom  # the page's own script ran to its end
    assert mismatched_figures(dom, json.loads((project / "report.json").read_text())) == []
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] > 1000 and pixels.shape[1] == 1280
    assert float(np.std(pixels[..., :3])) > 0.05  # not a blank page: text, tables and figures drawn
    return shot


def test_the_checker_sees_console_errors_and_requests(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="http://example.invalid/x.png">'
                   '<script>console.error("boom")</script></body></html>')
    _, console, requests = load_in_chromium(bad, tmp_path)
    assert any("boom" in line for line in console)
    assert requests == ["http://example.invalid/x.png"]


def test_sample_report_page_in_chromium(tmp_path: Path) -> None:
    from fastml.pipeline import write_html_report

    project, report = sample_project(tmp_path)
    write_html_report(project, report)
    assert_page_ok(project, tmp_path)


def _build_recipes() -> list[str]:
    """Every shipped recipe that is a build (a scan recipe's points are builds of the recipes it names)."""
    import yaml

    return [p.name for p in sorted(CONFIGS.glob("*.yaml")) if "scan" not in (yaml.safe_load(p.read_text()) or {})]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", _build_recipes())
def test_every_shipped_recipe_quick_build_page_in_chromium(recipe: str, quick_recipe_build, quick_jet_build,
                                                          tmp_path: Path) -> None:
    """The session's --quick build of each shipped recipe (shared with the diagnose and kinds tests)."""
    project = quick_jet_build[0] if recipe == "jet_tagger.yaml" else quick_recipe_build(recipe)
    assert_page_ok(project, tmp_path)



def test_scan_page_in_chromium(tmp_path: Path) -> None:
    page = sample_scan(tmp_path)
    dom, console, requests = load_in_chromium(page, tmp_path)
    assert console == [] and requests == [], (console, requests)
    assert 'data-ready="1"' in dom and 'class="sortable"' in dom and dom.count('href="../projects/p0/report.html"') >= 3
