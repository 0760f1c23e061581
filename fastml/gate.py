"""Budget gates: compare a build report against its budgets (and, optionally, a baseline report).

``check_budgets`` guarantees:

- one row per budget that is set (``max_mismatches`` is always set, default 0), plus one row per
  ``max_regression`` entry, plus a failing ``build`` row when the report's status is "failed";
- every row has status "pass", "fail" or "not run"; a required check that could not run shows as
  "not run" and makes ``GateResult.passed`` false (it is never counted as a pass);
- a value is only ever read from the report; nothing is estimated or invented here (the one derived
  figure, latency in ns from cycles x clock period, says so in its source column).

Regression rows (``max_regression``) need a baseline: without one they show "not run" and do not
fail the gate (there is nothing to regress from, e.g. on the first pipeline of a repository); with a
baseline they are required.

Resource counts use the report's ``resources[source]``. ``resource_source: first_available`` takes,
per metric, the first source in ``RESOURCE_SOURCE_ORDER`` (vivado > vitis_hls > yosys > da4ml_estimate
> conifer_estimate) that gives a count; naming one source requires it. BRAM is counted in 18 Kb
blocks (``BRAM_18K``, what Vitis HLS reports); percentages of a part use the totals in ``PART_RESOURCES``.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .recipe import BudgetsConfig
from .report import NOT_RUN, RESOURCE_SOURCE_ORDER, Report

Status = Literal["pass", "fail", "not run"]

#: Totals per device family (prefix of the part name): LUT, FF, DSP slices, BRAM in 18 Kb blocks.
#: From the AMD/Xilinx product tables (UltraScale+ DS890/DS923/DS962, UltraScale DS890, 7-series DS180).
PART_RESOURCES: dict[str, dict[str, int]] = {
    "xcvu13p": {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram": 5_376},
    "xcvu11p": {"lut": 1_296_000, "ff": 2_592_000, "dsp": 9_216, "bram": 4_032},
    "xcvu9p": {"lut": 1_182_240, "ff": 2_364_480, "dsp": 6_840, "bram": 4_320},
    "xcu250": {"lut": 1_728_000, "ff": 3_456_000, "dsp": 12_288, "bram": 5_376},
    "xcu200": {"lut": 1_182_240, "ff": 2_364_480, "dsp": 6_840, "bram": 4_320},
    "xcu55c": {"lut": 1_303_680, "ff": 2_607_360, "dsp": 9_024, "bram": 4_032},
    "xcku115": {"lut": 663_360, "ff": 1_326_720, "dsp": 5_520, "bram": 4_320},
    "xcku15p": {"lut": 522_720, "ff": 1_045_440, "dsp": 1_968, "bram": 1_968},
    "xczu9eg": {"lut": 274_080, "ff": 548_160, "dsp": 2_520, "bram": 1_824},
    "xc7a100t": {"lut": 63_400, "ff": 126_800, "dsp": 240, "bram": 270},
    "xc7z020": {"lut": 53_200, "ff": 106_400, "dsp": 220, "bram": 280},
}

RESOURCE_METRICS = ("lut", "ff", "dsp", "bram")
#: Metrics ``max_regression`` may name; accuracy regresses when it falls, everything else when it grows.
REGRESSION_METRICS = ("lut", "ff", "dsp", "bram", "latency_cycles", "latency_ns", "ii", "accuracy")
_PCT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def part_totals(part: str | None) -> dict[str, int] | None:
    """Resource totals of ``part`` (longest matching family prefix, case-insensitive), or None if unknown."""
    if not part:
        return None
    name = part.strip().lower()
    matches = [family for family in PART_RESOURCES if name.startswith(family)]
    return dict(PART_RESOURCES[max(matches, key=len)]) if matches else None


@dataclass
class GateRow:
    """One evaluated budget. ``failed`` is what the exit code counts: a fail, or a required check not run."""

    metric: str
    value: float | int | None
    budget: str
    source: str
    status: Status
    required: bool = True
    reason: str = ""
    baseline: float | int | None = None
    change: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail" or (self.status == "not run" and self.required)

    def status_text(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason and self.status != "pass" else self.status


@dataclass
class MetricChange:
    """Informative change of one metric against the baseline (shown whether or not it has a budget)."""

    metric: str
    source: str
    baseline: float | int
    value: float | int
    change: str


@dataclass
class GateResult:
    """The gate's verdict for one report, with renderers for terminals, merge requests and CI systems."""

    name: str
    rows: list[GateRow]
    changes: list[MetricChange] = field(default_factory=list)
    baseline_name: str | None = None

    @property
    def passed(self) -> bool:
        return not any(row.failed for row in self.rows)

    @property
    def failures(self) -> list[GateRow]:
        return [row for row in self.rows if row.failed]

    def summary(self) -> str:
        n = len(self.rows)
        if self.passed:
            skipped = sum(row.status == "not run" for row in self.rows)
            extra = f" ({skipped} optional check(s) not run)" if skipped else ""
            return f"PASSED: {self.name}: {n - skipped} of {n} budget checks passed{extra}"
        names = ", ".join(row.metric for row in self.failures)
        return f"FAILED: {self.name}: {len(self.failures)} of {n} budget checks failed ({names})"

    def _columns(self) -> list[str]:
        cols = ["metric", "value", "budget", "source", "status"]
        return [*cols, "baseline", "change"] if self.baseline_name is not None else cols

    def _cells(self, row: GateRow) -> list[str]:
        cells = [row.metric, _fmt(row.value), row.budget, row.source, row.status_text()]
        if self.baseline_name is not None:
            cells += [_fmt(row.baseline) if row.baseline is not None else "", row.change]
        return cells

    def to_table(self) -> str:
        """Plain-text table (fixed-width columns) followed by a one-line verdict."""
        header = self._columns()
        body = [self._cells(row) for row in self.rows]
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [f"fastml check: {self.name}" + (f" (baseline: {self.baseline_name})" if self.baseline_name else ""),
               line(header), line(["-" * w for w in widths]), *map(line, body)]
        if self.changes:
            out += ["", "change vs baseline:"]
            out += [f"  {c.metric} [{c.source}]: {_fmt(c.baseline)} -> {_fmt(c.value)} ({c.change})"
                    for c in self.changes]
        out += ["", self.summary()]
        return "\n".join(out)

    def to_markdown(self) -> str:
        """Markdown for a merge-request comment: verdict heading, budget table, change table."""
        mark = "✅ passed" if self.passed else "❌ failed"
        cols = self._columns()
        out = [f"### fastml check: `{self.name}` — {mark}", "",
               "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.rows:
            cells = self._cells(row)
            cells[4] = {"pass": "✅ ", "fail": "❌ "}.get(row.status, "❌ " if row.required else "⚪ ") + cells[4]
            out.append("| " + " | ".join(_md_escape(c) for c in cells) + " |")
        if self.changes:
            out += ["", f"Change vs baseline `{self.baseline_name}`:", "",
                    "| metric | source | baseline | value | change |", "|---|---|---:|---:|---:|"]
            out += [f"| {c.metric} | {c.source} | {_fmt(c.baseline)} | {_fmt(c.value)} | {c.change} |"
                    for c in self.changes]
        out += ["", self.summary(), ""]
        return "\n".join(out)

    def to_junit_xml(self) -> str:
        """JUnit XML: one testcase per row; failures (including required checks not run) as ``<failure>``.

        ``<skipped>`` is used only for optional checks that did not run (regressions without a baseline).
        """
        suites = ET.Element("testsuites", name="fastml check")
        suite = ET.SubElement(suites, "testsuite", name=f"fastml budgets: {self.name}", tests=str(len(self.rows)),
                              failures=str(len(self.failures)), errors="0",
                              skipped=str(sum(r.status == "not run" and not r.required for r in self.rows)))
        for row in self.rows:
            case = ET.SubElement(suite, "testcase", classname=f"fastml.budgets.{self.name}", name=row.metric, time="0")
            detail = f"value {_fmt(row.value)}, budget {row.budget}, source {row.source}"
            if row.baseline is not None:
                detail += f", baseline {_fmt(row.baseline)} ({row.change})"
            if row.failed:
                failure = ET.SubElement(case, "failure", message=f"{row.metric}: {row.status_text()}",
                                        type="not run" if row.status == "not run" else "budget exceeded")
                failure.text = detail
            elif row.status == "not run":
                ET.SubElement(case, "skipped", message=f"{row.metric}: {row.status_text()}")
            else:
                ET.SubElement(case, "system-out").text = detail
        ET.indent(suites)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "baseline": self.baseline_name,
                "rows": [{**asdict(row), "failed": row.failed} for row in self.rows],
                "changes": [asdict(c) for c in self.changes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def _fmt(v: Any) -> str:
    if v is None:
        return NOT_RUN
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.6g}"
    return str(v)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _pct_change(base: float, value: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - base) / abs(base)


def _fmt_change(base: float | None, value: float | None) -> str:
    if base is None or value is None:
        return ""
    rel = _pct_change(base, value)
    return f"{'+' if rel >= 0 else '-'}{'inf' if math.isinf(rel) else f'{abs(rel) * 100:.1f}'}%"


# --------------------------------------------------------------------------------------------- values


def _resource(report: Report, metric: str, wanted: str) -> tuple[int | None, str, str]:
    """(value, source, why-not) of a resource count under the ``resource_source`` rule."""
    if wanted != "first_available":
        res = report.resources.get(wanted)
        if res is None:
            return None, wanted, f"{wanted} not in report"
        value = getattr(res, metric, None)
        return (value, wanted, "") if value is not None else (None, wanted, f"{wanted} gives no {metric} count")
    for source in RESOURCE_SOURCE_ORDER:
        res = report.resources.get(source)
        if res is not None and getattr(res, metric, None) is not None:
            return getattr(res, metric), source, ""
    return None, "—", f"no resource source in report gives {metric}"


def _common_resource(report: Report, baseline: Report, metric: str, wanted: str) -> tuple[Any, Any, str, str]:
    """(value, baseline value, source, why-not) from one source both reports give, to compare like with like."""
    sources = RESOURCE_SOURCE_ORDER if wanted == "first_available" else (wanted,)
    for source in sources:
        a, b = report.resources.get(source), baseline.resources.get(source)
        if a is not None and b is not None and getattr(a, metric, None) is not None \
                and getattr(b, metric, None) is not None:
            return getattr(a, metric), getattr(b, metric), source, ""
    where = "any source" if wanted == "first_available" else wanted
    return None, None, where, f"no {metric} count from {where} in both report and baseline"


def _latency(report: Report, metric: str) -> tuple[float | int | None, str, str]:
    lat = report.latency
    if metric == "latency_cycles":
        return lat.cycles, lat.source, "" if lat.cycles is not None else "no latency in cycles in report"
    if metric == "ii":
        return lat.ii, lat.source, "" if lat.ii is not None else "no II in report"
    if lat.ns is not None:
        return lat.ns, lat.source, ""
    clock = report.firmware.get("clock_period_ns")
    if lat.cycles is not None and isinstance(clock, int | float):
        return lat.cycles * float(clock), f"{lat.source} (cycles x {clock} ns clock)", ""
    return None, lat.source, "no latency in ns in report"


def _metric(report: Report, metric: str, resource_source: str) -> tuple[Any, str, str]:
    if metric in RESOURCE_METRICS:
        return _resource(report, metric, resource_source)
    if metric == "accuracy":
        acc = report.accuracy.firmware
        return acc, "firmware", "" if acc is not None else "firmware accuracy not measured"
    return _latency(report, metric)


# ------------------------------------------------------------------------------------------ the gate


def _parse_pct(text: str) -> float:
    match = _PCT.match(text)
    if match is None:
        raise ValueError(f"expected a percentage such as '5%', got {text!r}")
    return float(match.group(1))


def _row_with_baseline(row: GateRow, baseline: Report | None, metric: str, resource_source: str) -> GateRow:
    if baseline is None or row.value is None:
        return row
    if metric in RESOURCE_METRICS:
        res = baseline.resources.get(row.source)
        base = getattr(res, metric, None) if res is not None else None
    else:
        base, _, _ = _metric(baseline, metric, resource_source)
    if base is not None:
        row.baseline, row.change = base, _fmt_change(base, row.value)
    return row


def _max_row(metric: str, value: Any, limit: float, budget: str, source: str, why: str) -> GateRow:
    if value is None:
        return GateRow(metric, None, budget, source, "not run", reason=why)
    ok = value <= limit + 1e-12 * max(1.0, abs(limit))  # float noise, e.g. 0.80 - 0.79 vs 0.01
    return GateRow(metric, value, budget, source, "pass" if ok else "fail",
                   reason="" if ok else f"{_fmt(value)} > {_fmt(limit)}")


def _resource_row(report: Report, metric: str, budget: int | str, budgets: BudgetsConfig,
                  part_resources: dict | None) -> GateRow:
    value, source, why = _resource(report, metric, budgets.resource_source)
    if isinstance(budget, int):
        return _max_row(metric, value, budget, f"<= {budget}", source, why)
    pct = _parse_pct(budget)
    part = (part_resources or {}).get("part") or report.firmware.get("part")
    totals = part_resources if part_resources and metric in part_resources else part_totals(part)
    if totals is None or metric not in totals:
        reason = (f"part {part!r} is not in fastml's part table (known: {', '.join(PART_RESOURCES)}); "
                  "give an absolute count instead" if part else "no part recorded in report for a % budget")
        return GateRow(metric, value, f"<= {pct:g}% of part", source, "fail", reason=reason)
    limit = pct / 100 * totals[metric]
    return _max_row(metric, value, limit, f"<= {pct:g}% of {part or 'part'} ({limit:.0f})", source, why)


def _mismatch_row(report: Report, budgets: BudgetsConfig) -> GateRow:
    budget = f"<= {budgets.max_mismatches}"
    if not report.verification:
        return GateRow("bit_exact_mismatches", None, budget, "—", "not run",
                       reason="no verification level in report (bit-exactness was never checked)")
    level, worst = max(report.verification.items(), key=lambda kv: kv[1].mismatches)
    source = f"{level} (worst of {', '.join(report.verification)})" if len(report.verification) > 1 else level
    return _max_row("bit_exact_mismatches", worst.mismatches, budgets.max_mismatches, budget, source, "")


def _regression_row(report: Report, baseline: Report | None, metric: str, limit_text: str,
                    resource_source: str) -> GateRow:
    name = f"{metric} regression"
    if metric not in REGRESSION_METRICS:
        return GateRow(name, None, limit_text, "—", "fail",
                       reason=f"unknown metric {metric!r} (expected one of: {', '.join(REGRESSION_METRICS)})")
    pct = _parse_pct(limit_text)
    worse = "drop" if metric == "accuracy" else "growth"
    budget = f"{worse} <= {pct:g}% vs baseline"
    if baseline is None:
        return GateRow(name, None, budget, "—", "not run", required=False, reason="no baseline given")
    if metric in RESOURCE_METRICS:
        value, base, source, why = _common_resource(report, baseline, metric, resource_source)
    else:
        value, source, why = _metric(report, metric, resource_source)
        base, _, why_base = _metric(baseline, metric, resource_source)
        why = why or (f"baseline: {why_base}" if base is None else "")
    if value is None or base is None:
        return GateRow(name, value, budget, source, "not run", reason=why, baseline=base)
    rel = _pct_change(base, value)
    regression = -rel if metric == "accuracy" else rel
    ok = regression <= pct / 100 + 1e-12
    return GateRow(name, value, budget, source, "pass" if ok else "fail", baseline=base,
                   change=_fmt_change(base, value),
                   reason="" if ok else f"{worse} {_fmt_change(base, value)} exceeds {pct:g}%")


def _changes(report: Report, baseline: Report, resource_source: str) -> list[MetricChange]:
    out: list[MetricChange] = []
    for metric in REGRESSION_METRICS:
        if metric in RESOURCE_METRICS:
            value, base, source, _ = _common_resource(report, baseline, metric, resource_source)
        else:
            value, source, _ = _metric(report, metric, resource_source)
            base, _, _ = _metric(baseline, metric, resource_source)
        if value is not None and base is not None:
            out.append(MetricChange(metric, source, base, value, _fmt_change(base, value)))
    return out


def check_budgets(report: Report, budgets: BudgetsConfig, baseline: Report | None = None,
                  part_resources: dict | None = None) -> GateResult:
    """Evaluate every set budget of ``budgets`` on ``report`` (see the module docstring for the rules).

    ``part_resources`` overrides the part table: ``{"lut": N, "ff": N, "dsp": N, "bram": N}`` totals,
    optionally with ``"part": name`` for display.
    """
    rows: list[GateRow] = []
    if report.status != "ok":
        rows.append(GateRow("build", None, "status ok", "report", "fail", reason=f"build status is {report.status!r}"))
    for metric, limit in (("latency_cycles", budgets.latency_cycles), ("latency_ns", budgets.latency_ns),
                          ("ii", budgets.ii)):
        if limit is not None:
            value, source, why = _latency(report, metric)
            rows.append(_row_with_baseline(_max_row(metric, value, limit, f"<= {_fmt(limit)}", source, why),
                                           baseline, metric, budgets.resource_source))
    for metric in RESOURCE_METRICS:
        budget = getattr(budgets, metric)
        if budget is not None:
            row = _resource_row(report, metric, budget, budgets, part_resources)
            rows.append(_row_with_baseline(row, baseline, metric, budgets.resource_source))
    acc = report.accuracy
    if budgets.min_accuracy is not None:
        why = "" if acc.firmware is not None else "firmware accuracy not measured"
        value = acc.firmware
        status: Status = "not run" if value is None else "pass" if value >= budgets.min_accuracy else "fail"
        row = GateRow("accuracy", value, f">= {_fmt(budgets.min_accuracy)}", "firmware", status,
                      reason=why if value is None else "" if status == "pass"
                      else f"{_fmt(value)} below {_fmt(budgets.min_accuracy)}")
        rows.append(_row_with_baseline(row, baseline, "accuracy", budgets.resource_source))
    if budgets.max_accuracy_drop is not None:
        if acc.firmware is None or acc.float is None:
            missing = "firmware" if acc.firmware is None else "float"
            rows.append(GateRow("accuracy_drop", None, f"<= {_fmt(budgets.max_accuracy_drop)}", "float - firmware",
                                "not run", reason=f"{missing} accuracy not measured"))
        else:
            drop = acc.float - acc.firmware
            rows.append(_max_row("accuracy_drop", drop, budgets.max_accuracy_drop,
                                 f"<= {_fmt(budgets.max_accuracy_drop)}", "float - firmware", ""))
    rows.append(_mismatch_row(report, budgets))
    rows += _efficiency_rows(report, budgets.min_signal_efficiency_at_rate)
    for metric, limit_text in budgets.max_regression.items():
        rows.append(_regression_row(report, baseline, metric, limit_text, budgets.resource_source))
    changes = _changes(report, baseline, budgets.resource_source) if baseline is not None else []
    return GateResult(report.name, rows, changes, baseline.name if baseline is not None else None)


def _efficiency_rows(report: Report, limits: dict[str, float]) -> list[GateRow]:
    """``min_signal_efficiency_at_rate``: every signal's efficiency at each named rate (anomaly-detection
    reports; the quantised model on the whole test split, i.e. the bit-exact firmware's figure)."""
    rows: list[GateRow] = []
    level = (report.task.get("levels") or {}).get("quantized_test_split") if report.task else None
    for rate, limit in limits.items():
        budget, source = f">= {_fmt(limit)}", "quantized, test split"
        if level is None:
            rows.append(GateRow(f"signal_efficiency@{rate}", None, budget, source, "not run",
                                reason="the report has no anomaly-detection figures (report.task)"))
            continue
        for name, sig in level.get("signals", {}).items():
            eff = sig.get("efficiency")
            value = eff.get(rate) if isinstance(eff, dict) else None
            metric = f"signal_efficiency@{rate}[{name}]"
            if not isinstance(value, (int, float)):
                why = value if isinstance(value, str) else f"no figure at rate {rate!r} (has: {', '.join(eff or [])})"
                rows.append(GateRow(metric, None, budget, source, "not run", reason=why.removeprefix("not run: ")))
                continue
            status: Status = "pass" if value >= limit else "fail"
            rows.append(GateRow(metric, value, budget, source, status,
                                reason="" if status == "pass" else f"{_fmt(value)} below {_fmt(limit)}"))
    return rows
