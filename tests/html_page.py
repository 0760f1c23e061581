"""Reading a fastml ``report.html`` back, in Python and in headless Chromium (shared by the report tests).

A plain module (not collected), like ``tiny_rtl.py``. ``page_figures`` collects every element carrying
``data-key`` (a dotted path into report.json) and its displayed text; ``mismatched_figures`` compares them with
the report; ``load_in_chromium`` opens a page from disk with the network disabled and returns the DOM after its
scripts ran, every console message, and every request the page itself made.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal, InvalidOperation
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

NOT_RUN = "not run"


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []  # (key, text parts) of the data-key elements being read

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = dict(attrs).get("data-key")
        if key:
            self._open.append((key, []))

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("td", "span", "div"):
            key, parts = self._open.pop()
            self.found.append((key, "".join(parts).strip()))

    def handle_data(self, data: str) -> None:
        for _, parts in self._open:
            parts.append(data)


def page_figures(page: str) -> list[tuple[str, str]]:
    """(data-key, displayed text) of every figure the page marks as read from report.json."""
    parser = _Figures()
    parser.feed(page)
    return parser.found


def lookup(doc: Any, key: str) -> Any:
    """The value at dotted ``key`` in ``doc``; a key may itself hold dots (``timings_s.convert.trace``)."""
    if key in doc if isinstance(doc, dict) else False:
        return doc[key]
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        head, rest = ".".join(parts[:i]), ".".join(parts[i:])
        if isinstance(doc, dict) and head in doc:
            return doc[head] if not rest else lookup(doc[head], rest)
        if isinstance(doc, list) and head.isdigit() and int(head) < len(doc):
            return doc[int(head)] if not rest else lookup(doc[int(head)], rest)
    raise KeyError(key)


def shows(text: str, value: Any) -> bool:
    """Whether ``text`` (as the page shows a figure) is ``value`` to the digits shown."""
    if value is None:
        return text == NOT_RUN
    if isinstance(value, str):
        return text == value
    pct = text.endswith("%")
    digits = text.removesuffix("%").strip().replace(",", "")
    try:
        shown = Decimal(digits)
    except InvalidOperation:
        return False
    exponent = shown.as_tuple().exponent
    tol = Decimal(5) * Decimal(10) ** (int(exponent) - 1)  # half a unit of the last digit shown
    if pct:
        shown, tol = shown / 100, tol / 100
    return abs(shown - Decimal(str(float(value)))) <= tol * Decimal("1.000001")


def mismatched_figures(page: str, report: dict[str, Any]) -> list[str]:
    """Every marked figure of ``page`` that is not ``report``'s (empty = all equal); also fails on no figures."""
    found = page_figures(page)
    if not found:
        return ["the page marks no figures (data-key)"]
    bad = []
    for key, text in found:
        try:
            value = lookup(report, key)
        except KeyError:
            bad.append(f"{key}: not in report.json (page shows {text!r})")
            continue
        if not shows(text, value):
            bad.append(f"{key}: page shows {text!r}, report.json has {value!r}")
    return bad


# ------------------------------------------------------------------------------------------------ Chromium


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


#: No network: every host resolves to nothing and every request goes to a closed proxy; the browser's own
#: services (updates, sync, ...) are off so that what the net log shows is the page's.
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
          "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
          "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
          "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
          "--disable-features=Translate,OptimizationHints,MediaRouter,SpellCheck"]


def _page_requests(net_log: Path) -> list[str]:
    """URLs the page (a file:// document) asked for, from Chromium's net log; the browser's own are left out."""
    events = json.loads(net_log.read_text()).get("events", [])
    urls: dict[int, str] = {}
    from_page: set[int] = set()
    for ev in events:
        params, source = ev.get("params") or {}, (ev.get("source") or {}).get("id")
        if "url" in params:
            urls.setdefault(source, params["url"])
        if "file://" in str(params.get("network_isolation_key", "")) or params.get("initiator") == "null":
            from_page.add(source)
    return sorted({urls[s] for s in from_page if s in urls and not urls[s].startswith(("file:", "data:"))})


def load_in_chromium(page: Path, workdir: Path, screenshot: Path | None = None,
                     size: tuple[int, int] = (1280, 4000)) -> tuple[str, list[str], list[str]]:
    """(DOM after scripts, console messages, URLs the page requested) of ``page`` opened from disk, offline."""
    exe = chromium()
    assert exe is not None
    net_log = workdir / "net.json"
    base = [exe, *_FLAGS, f"--user-data-dir={workdir / 'profile'}"]
    url = page.resolve().as_uri()
    run = subprocess.run([*base, f"--log-net-log={net_log}", "--dump-dom", url], capture_output=True, text=True,
                         timeout=120)
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln]
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", f"--window-size={size[0]},{size[1]}", url],
                       capture_output=True, timeout=120, check=True)
    return run.stdout, console, _page_requests(net_log)


# ------------------------------------------------------------------------------------------ a sample project


def sample_project(folder: Path, name: str = "sample") -> tuple[Path, Any]:
    """A hand-made rtl-like project folder: a ``Report`` with every section filled and the saved verification
    events (outputs and labels of 3 classes) behind its ROC curves. Returns (project folder, Report)."""
    import numpy as np

    from fastml.report import Latency, Report, Resources, VerificationLevel, write_report

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    y_ref = rng.normal(size=(400, 3)) + 2.0 * np.eye(3)[labels]
    project = folder / name
    (project / "model").mkdir(parents=True)
    np.savez_compressed(project / "model" / "verify_inputs.npz", x=rng.normal(size=(400, 4)), y_ref=y_ref,
                        labels=labels)
    report = Report(name=name, backend="rtl", config_hash="ab" * 32, created="2025-01-01T00:00:00+00:00",
                    versions={"fastml": "0.1.0", "da4ml": "0.5.2"},
                    firmware={"part": "xcvu13p-flga2577-2-e", "clock_period_ns": 5.0},
                    budgets={"lut": 5000, "latency_cycles": 4, "max_mismatches": 0})
    report.verification = {"emulator": VerificationLevel(samples=400, mismatches=0, outputs=3, wall_s=0.0123),
                           "rtl_sim": VerificationLevel(samples=400, mismatches=0, outputs=3, wall_s=0.25)}
    report.accuracy.float, report.accuracy.quantized, report.accuracy.firmware = 0.7512, 0.7431, 0.7431
    report.auc = {"quantized": {"g": 0.91234, "q": 0.8765, "w": 0.80001},
                  "firmware": {"g": 0.91234, "q": 0.8765, "w": 0.80001}}
    report.set_latency(Latency(cycles=3, ns=15.0, ii=1, source="da4ml"))
    report.resources = {"da4ml_estimate": Resources(lut=2390, ff=766, dsp=0, bram=0),
                        "yosys": Resources(lut=2409, ff=760, dsp=0, bram=0)}
    report.ebops = 9952.0
    report.checks = {"bit_exact_emulator": "pass", "bit_exact_rtl_sim": "pass",
                     "bit_exact_compiled_emulator": "not run: verify.compiled_emulator is false"}
    report.timings_s = {"data": 0.008, "train": 10.188, "convert": 26.2, "convert.trace": 4.3464}
    report.data = {"classes": ["g", "q", "w"]}
    report.model = {"kind": "mlp", "selection": {
        "rule": "smallest_within", "max_accuracy_drop": 0.01, "chosen": 1,
        "pareto": [{"epoch": 3, "val_accuracy": 0.70, "ebops": 5000.0},
                   {"epoch": 9, "val_accuracy": 0.745, "ebops": 9952.0},
                   {"epoch": 12, "val_accuracy": 0.75, "ebops": 14000.0}],
        "float_edges": [{"where": "fc1", "edge": "input", "choice": "input quantiser ap_fixed<16,6>"}]}}
    report.layers = {"source": "da4ml cost model", "cutoff": 5.0, "total_lut": 2650.5, "rows": [
        {"layer": "dense_0", "type": "QDense", "lut": 2001.5, "adders": 178, "lookups": 0, "ops": 186, "elements": 8,
         "bits_min": 17, "bits_max": 19, "bits_total": 145, "delay": 9.0, "stages": [0, 1], "ebops": 8512.0},
        {"layer": "logits", "type": "QDense", "lut": 649.0, "adders": 67, "lookups": 0, "ops": 67, "elements": 3,
         "bits_min": 16, "bits_max": 17, "bits_total": 50, "delay": 14.0, "stages": [1, 2], "ebops": 2680.0}],
        "not_run": {"ff": "per pipeline stage only"}}
    write_report(report, project)
    return project, report


def sample_scan(folder: Path) -> Path:
    """A hand-made scan folder: three points, the first two with figures, only the first with a built page."""
    from types import SimpleNamespace

    import pandas as pd

    from fastml.scan.engine import save_scan_html

    built, _ = sample_project(folder / "projects", "p0")
    (built / "report.html").write_text("<!DOCTYPE html><title>p0</title>")
    table = pd.DataFrame([
        {"point": "s-0", "status": "ok", "on_front": True, "accuracy_quantized": 0.74, "lut_da4ml_estimate": 2390,
         "latency_ns": 15.0, "project": str(built)},
        {"point": "s-1", "status": "ok", "on_front": False, "accuracy_quantized": 0.71, "lut_da4ml_estimate": 3100,
         "latency_ns": float("nan"), "project": str(folder / "projects" / "p1")},
        {"point": "s-2", "status": "failed", "on_front": False, "accuracy_quantized": float("nan"),
         "lut_da4ml_estimate": float("nan"), "latency_ns": float("nan"), "project": str(folder / "projects" / "p2")}])
    scan = folder / "scan"
    scan.mkdir()
    spec = SimpleNamespace(name="s", phase2=SimpleNamespace(front="lut"))
    return save_scan_html(table, spec, scan, {"points": 3, "ok": 2})  # type: ignore[arg-type]
