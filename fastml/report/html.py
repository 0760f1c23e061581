"""``report.html``: one self-contained page per build (and ``scan_html`` for a scan), for people to open.

Everything is inline — styles, figures (matplotlib PNGs as base64 ``data:`` URIs), the report itself (a
``<script type="application/json" id="report-json">``) — so the page opens from a CI artifact, an e-mail or a
folder with no network, and loads nothing from anywhere else (the browser test checks this).

The page is drawn from plain data only: a ``Report``, the project folder (for the saved verification events
behind the ROC curves / score distributions), and what the caller gathered from higher layers (the budget gate
as ``GateResult.to_dict()``, ``diagnosis.json``, a baseline report). This module imports nothing above the
bottom layer. Every figure shown in a table carries ``data-key="<path in report.json>"`` so a test can read the
page's numbers back and compare them with ``report.json``'s.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import NOT_RUN, RESOURCE_SOURCE_ORDER, Report, _atomic_write, float_edges

HTML_FILE = "report.html"
SCAN_HTML_FILE = "scan.html"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;background:#f6f7f9;margin:0}
main{max-width:1180px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:24px;margin:6px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce3;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:4px 18px 14px;margin:14px 0}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid #e7e9ee;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:1px 9px;border-radius:10px;font-weight:600;font-size:12px}
.pass,.ok{background:#dff3e4;color:#14632b}.fail,.failed{background:#fbe0e0;color:#9b1c1c}
.notrun{background:#eceef2;color:#4a5263}.better{background:#dff3e4}.worse{background:#fbe0e0}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:8px 14px;min-width:150px}
.card .v{font-size:20px;font-weight:600}.card .k{color:#5b6475;font-size:12px}
.meta{color:#5b6475;font-size:13px}.note{color:#5b6475;font-size:12.5px}
img,svg{max-width:100%;height:auto;display:block;margin:6px 0}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:8px 0}dl.kv dt{color:#5b6475}
dl.kv dd{margin:0}code{background:#f0f2f5;padding:0 4px;border-radius:3px}
.side{display:grid;grid-template-columns:1fr 1fr;gap:14px}
th.sortable{cursor:pointer}th.sortable:after{content:" \\2195";color:#9aa1ad}
"""

# Sorts a table by the clicked column (numbers numerically); inline, no library. ``data-ready`` on <html> says it
# ran to the end (the browser test reads it).
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function(t){
 t.querySelectorAll("th").forEach(function(th,i){th.classList.add("sortable");th.addEventListener("click",function(){
  var body=t.tBodies[0],rows=Array.from(body.rows),asc=th.dataset.asc!=="1";th.dataset.asc=asc?"1":"0";
  rows.sort(function(a,b){var x=a.cells[i].dataset.sort||a.cells[i].textContent,
   y=b.cells[i].dataset.sort||b.cells[i].textContent,nx=parseFloat(x),ny=parseFloat(y);
   var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
  rows.forEach(function(r){body.appendChild(r);});});});});
document.documentElement.dataset.ready="1";
"""


# ------------------------------------------------------------------------------------------- helpers


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, pct: bool = False) -> str:
    """A figure as the page shows it: ``not run`` for a missing one, percentages with two decimals."""
    if v is None or isinstance(v, str):
        return NOT_RUN if v is None else str(v)
    if isinstance(v, bool):
        return str(v)
    if pct:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return str(v)
        return f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _cell(v: Any, key: str | None = None, pct: bool = False, cls: str = "") -> str:
    """A table cell; ``key`` (a dotted path into report.json) lets tests read the figure back."""
    attrs = f' data-key="{_e(key)}"' if key else ""
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    if numeric:
        attrs += f' data-sort="{_e(v)}"'
    classes = " ".join(c for c in ("n" if numeric or v is None else "", cls) if c)
    return f'<td class="{classes}"{attrs}>{_e(_num(v, pct))}</td>' if classes else f"<td{attrs}>{_e(_num(v, pct))}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """``rows`` are rendered ``<td>`` strings (see ``_cell``) or HTML the caller escaped (``_e``); a column whose
    cells are numbers gets a right-aligned header."""
    body_rows = [[c if c.startswith("<td") else f"<td>{c}</td>" for c in row] for row in rows]
    numeric = [any(len(r) > i and r[i].startswith('<td class="n') for r in body_rows) for i in range(len(header))]
    head = "".join(f'<th class="n">{_e(h)}</th>' if numeric[i] else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in body_rows)
    cls_attr = f' class="{cls}"' if cls else ""
    return f"<table{cls_attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _status_badge(status: str) -> str:
    s = str(status)
    cls = "pass" if s in ("pass", "ok") else "fail" if s.startswith("fail") else "notrun"
    return f'<span class="badge {cls}">{_e(s)}</span>'


def _figure(draw: Any, alt: str) -> str:
    """``draw()`` -> a matplotlib Figure, embedded as a base64 PNG; a figure that cannot be drawn says why."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # never a window
        import matplotlib.pyplot as plt

        fig = draw()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        plt.close(fig)
    except Exception as err:  # a figure is extra: the page says why it is missing, never fails
        return f'<p class="note">{_e(alt)}: {NOT_RUN}: {_e(type(err).__name__)}: {_e(str(err)[:200])}</p>'
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{_e(anchor)}"><h2>{_e(title)}</h2>{body}</section>'


def _not_run(why: str) -> str:
    return f'<p class="note"><span class="badge notrun">{NOT_RUN}</span> {_e(why)}</p>'


# ------------------------------------------------------------------------------------------ sections


def _header(report: Report, title_extra: str = "") -> str:
    fw = report.firmware
    items = [("backend", report.backend), ("part", fw.get("part")), ("clock", f"{fw['clock_period_ns']:g} ns"
             if isinstance(fw.get("clock_period_ns"), (int, float)) else None),
             ("model kind", report.model.get("kind")), ("config hash", report.config_hash[:16] or None),
             ("created", report.created or None), ("recipe", report.config_path)]
    kv = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v) if v is not None else NOT_RUN}</dd>" for k, v in items)
    versions = ", ".join(f"{k} {v}" for k, v in report.versions.items()) or NOT_RUN
    return (f'<h1>{_e(report.name)} {_status_badge(report.status)}{title_extra}</h1>'
            f'<p class="meta">fastml build report</p><dl class="kv">{kv}<dt>versions</dt><dd>{_e(versions)}</dd></dl>')


def _best_resource(report: Report, metric: str) -> tuple[Any, str | None]:
    for source in RESOURCE_SOURCE_ORDER:
        res = report.resources.get(source)
        if res is not None and getattr(res, metric, None) is not None:
            return getattr(res, metric), source
    return None, None


def _cards(report: Report) -> str:
    exact = ("not run" if not report.verification else
             "yes" if all(v.mismatches == 0 for v in report.verification.values()) else "no")
    lut, lut_src = _best_resource(report, "lut")
    lat = report.latency
    cards = [("firmware accuracy", _num(report.accuracy.firmware, pct=True), "accuracy.firmware"),
             ("bit-exact", exact, None),
             (f"latency ({lat.source})", f"{_num(lat.cycles)} cycles / {_num(lat.ns)} ns", None),
             (f"LUT ({lut_src or NOT_RUN})", _num(lut), f"resources.{lut_src}.lut" if lut_src else None)]
    out = []
    for k, v, key in cards:
        attr = f' data-key="{_e(key)}"' if key else ""
        out.append(f'<div class="card"><div class="k">{_e(k)}</div><div class="v"{attr}>{_e(v)}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>'


_LIMIT = re.compile(r"^\s*(<=|>=)\s*([-+0-9.eE]+)")
_PAREN = re.compile(r"\(([-+0-9.eE]+)\)\s*$")


def budget_margin(row: Mapping[str, Any]) -> str:
    """The distance from a gate row's value to its budget (positive = room left), as text; "" where none."""
    value, budget = row.get("value"), str(row.get("budget", ""))
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    match = _LIMIT.match(budget)
    if match is None:
        return ""
    paren = _PAREN.search(budget)  # "<= 5% of xcvu9p (59112)": the absolute limit is in brackets
    try:
        limit = float(paren.group(1) if paren else match.group(2))
    except ValueError:
        return ""
    room = limit - value if match.group(1) == "<=" else value - limit
    rel = f" ({100 * room / abs(limit):+.1f}% of the budget)" if limit else ""
    return f"{room:+,.0f}{rel}" if abs(room) >= 1000 else f"{room:+.4g}{rel}"


def _checks(report: Report, gate: Mapping[str, Any] | None, gate_why: str | None) -> str:
    parts: list[str] = []
    if gate is not None:
        verdict = "pass" if gate.get("passed") else "fail"
        parts.append(f"<p>Budget gate (what <code>fastml check</code> decides): {_status_badge(verdict)}</p>")
        rows = [[_e(r["metric"]), _cell(r.get("value")), _e(r.get("budget", "")),
                 f'<td class="n">{_e(budget_margin(r))}</td>', _e(r.get("source", "")),
                 f"<td>{_status_badge(r['status'])} {_e(r.get('reason') or '')}</td>"] for r in gate.get("rows", [])]
        parts.append(_table(["metric", "value", "budget", "margin", "source", "status"], rows))
    else:
        parts.append(_not_run(f"budget gate: {gate_why or 'not evaluated'}"))
    if report.checks:
        parts.append("<h3>Checks recorded by the build</h3>")
        parts.append(_table(["check", "result"], [[_e(k), f"<td>{_status_badge(v)}</td>"]
                                                   for k, v in report.checks.items()]))
    return _section("Checks and budgets", "".join(parts), "checks")


def _bit_exact(report: Report) -> str:
    if not report.verification:
        return _section("Bit-exactness", _not_run("no verification level ran"), "bit-exact")
    rows = []
    for level, v in report.verification.items():
        status = "pass" if v.mismatches == 0 else "fail"
        rows.append([_e(level), _cell(v.samples, f"verification.{level}.samples"),
                     _cell(v.outputs, f"verification.{level}.outputs"),
                     _cell(v.mismatches, f"verification.{level}.mismatches"), _e(v.reference),
                     _cell(v.wall_s, f"verification.{level}.wall_s"), f"<td>{_status_badge(status)}</td>"])
    body = _table(["level", "events", "outputs per event", "mismatches", "reference", "wall s", ""], rows)
    not_run = {k: v for k, v in report.checks.items() if k.startswith("bit_exact_") and v.startswith(NOT_RUN)}
    body += "".join(_not_run(f"{k.removeprefix('bit_exact_')}: {v.removeprefix(NOT_RUN + ': ')}")
                    for k, v in not_run.items())
    return _section("Bit-exactness per level", body, "bit-exact")


def _load_events(project_dir: Path | None) -> tuple[Any, Any] | None:
    """(reference outputs, labels) of the saved verification events, or None."""
    if project_dir is None:
        return None
    path = project_dir / "model" / "verify_inputs.npz"
    if not path.is_file():
        return None
    import numpy as np

    try:
        with np.load(path) as f:
            if "labels" not in f.files or "y_ref" not in f.files:
                return None
            labels = np.asarray(f["labels"])
            return np.asarray(f["y_ref"])[: len(labels)], labels
    except (OSError, ValueError):
        return None


def _roc_figure(report: Report, y_ref: Any, labels: Any) -> Any:
    from .plots import roc_curves  # deferred: matplotlib loads only when a page draws a figure

    exact = report.verification and all(v.mismatches == 0 for v in report.verification.values())
    which = "firmware" if exact else "quantized"  # the saved outputs are the reference model's
    classes = report.data.get("classes") or [str(i) for i in range(max(2, y_ref.shape[-1]))]
    return roc_curves(labels, {which: y_ref}, classes,
                      title=f"{report.name}: ROC on {len(labels)} test events ({which} outputs)")


def _score_figure(report: Report, y_ref: Any, labels: Any) -> Any:
    import matplotlib.pyplot as plt
    import numpy as np

    score = np.asarray(y_ref, np.float64).reshape(len(labels), -1)[:, 0]
    classes = report.data.get("classes") or []
    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.histogram_bin_edges(score, bins=60)
    for cls in np.unique(labels):
        name = classes[int(cls)] if int(cls) < len(classes) else str(cls)
        ax.hist(score[labels == cls], bins=bins, histtype="step", lw=1.6, density=True,
                label=f"{name} ({int(np.sum(labels == cls))} events)")
    level = (report.task.get("levels") or {}).get("firmware") or (report.task.get("levels") or {}).get("quantized")
    for rate, info in ((level or {}).get("rates") or {}).items():
        if isinstance(info, dict) and info.get("threshold") is not None:
            ax.axvline(float(info["threshold"]), ls="--", color="grey", lw=1)
            ax.annotate(f"{rate} threshold", (float(info["threshold"]), ax.get_ylim()[1] * 0.9), rotation=90,
                        fontsize=7, ha="right")
    ax.set_yscale("log")
    ax.set_xlabel("anomaly score (firmware-exact reference output)")
    ax.set_ylabel("events per unit score (normalised, log scale)")
    ax.set_title(f"{report.name}: score distributions on the verification events")
    ax.legend(fontsize=8)
    return fig


def _accuracy(report: Report, project_dir: Path | None) -> str:
    acc = report.accuracy
    headline = report.task.get("headline") if report.task else None
    parts = []
    if headline:
        parts.append(f'<p class="note">Headline figure: {_e(headline)}.</p>')
    fmt_pct = headline is None  # a classifier's accuracy is a fraction; a task's headline (an AUC) is not
    parts.append(_table(["", "float", "quantized", "firmware"], [[
        "accuracy" if headline is None else "headline",
        _cell(acc.float, "accuracy.float", fmt_pct), _cell(acc.quantized, "accuracy.quantized", fmt_pct),
        _cell(acc.firmware, "accuracy.firmware", fmt_pct)]]))
    if report.auc:
        classes = list(next(iter(report.auc.values())))
        rows = [[_e(which)] + [_cell(per.get(c), f"auc.{which}.{c}") for c in classes]
                for which, per in report.auc.items()]
        parts.append("<h3>ROC AUC per class (one vs rest)</h3>" + _table(["scores", *classes], rows))
    if report.task.get("task") == "anomaly_detection":
        parts.append(_anomaly_tables(report.task))
    events = _load_events(project_dir)
    if events is None:
        parts.append(_not_run("curves: the project's model/verify_inputs.npz (outputs and labels of the "
                              "verification events) is not there"))
    elif report.task.get("task") == "anomaly_detection":
        parts.append(_figure(lambda: _score_figure(report, *events), "score distributions"))
    elif not report.task:
        parts.append(_figure(lambda: _roc_figure(report, *events), "ROC curves"))
        if acc.float is not None:
            parts.append('<p class="note">The float model\'s curves are not redrawn here (its outputs are not '
                         "saved with the project); its AUCs are in the table above.</p>")
    return _section("Accuracy", "".join(parts), "accuracy")


def _anomaly_tables(task: Mapping[str, Any]) -> str:
    out = []
    for level, fig in (task.get("levels") or {}).items():
        rates = list(fig.get("rates") or {})
        rows = []
        for name, sig in (fig.get("signals") or {}).items():
            eff = sig.get("efficiency") if isinstance(sig.get("efficiency"), dict) else {}
            key = f"task.levels.{level}.signals.{name}"
            rows.append([_e(name), _cell(sig.get("events")), _cell(sig.get("auc"), f"{key}.auc")]
                        + [_cell(eff.get(r), f"{key}.efficiency.{r}")
                           if not isinstance(eff.get(r), str) else _e(eff.get(r)) for r in rates])
        out.append(f"<h3>Signal efficiency at fixed trigger rate: {_e(level)} ({_e(fig.get('sm_events'))} SM events)"
                   "</h3>" + _table(["signal", "events", "ROC AUC", *(f"eff. @ {r}" for r in rates)], rows))
    for level, agree in (task.get("agreement") or {}).items():
        out.append(f"<p>Student vs teacher ({_e(level)}): Pearson {_e(_num(agree.get('pearson')))}, Spearman "
                   f"{_e(_num(agree.get('spearman')))}, MAE {_e(_num(agree.get('mae')))} on "
                   f"{_e(agree.get('events'))} events</p>")
    return "".join(out)


def _float_edges(report: Report) -> str:
    edges = float_edges(report)
    if not edges:
        return ""
    acc = report.accuracy
    cost = (f"{100 * (acc.float - acc.quantized):+.2f} points (float {_num(acc.float, True)} as published, "
            f"{_num(acc.quantized, True)} as built)" if acc.float is not None and acc.quantized is not None
            else NOT_RUN)
    body = (f"<p>The published model computes these in floating point; the firmware (and the reference it is "
            f"verified against) uses the choices below. Accuracy cost of all of them together: {_e(cost)}.</p>"
            + _table(["where", "edge", "choice"],
                     [[_e(e.get("where", "")), _e(e.get("edge", "")), _e(e.get("choice", ""))] for e in edges]))
    return _section("Float edges made explicit", body, "float-edges")


def _costs(report: Report) -> str:
    parts = ["<h3>Latency</h3>"]
    lat_rows = [[_e(src), _cell(lat.cycles, f"latency_by_source.{src}.cycles"),
                 _cell(lat.ns, f"latency_by_source.{src}.ns"), _cell(lat.ii, f"latency_by_source.{src}.ii")]
                for src, lat in report.latency_by_source.items()]
    parts.append(_table(["source", "cycles", "ns", "II"], lat_rows) if lat_rows else _not_run("no latency figure"))
    parts.append("<h3>Resources</h3>")
    if report.resources:
        rows = [[_e(src)] + [_cell(getattr(r, m), f"resources.{src}.{m}") for m in ("lut", "ff", "dsp", "bram")]
                + [_e(getattr(r, "note", "") or "")] for src, r in report.resources.items()]
        parts.append(_table(["source", "LUT", "FF", "DSP", "BRAM", "note"], rows))
        parts.append(_figure(lambda: _resource_bars(report), "resources per source"))
    else:
        parts.append(_not_run("no resource source ran"))
    if report.ebops is not None:
        parts.append(f'<p>EBOPs (HGQ2): <span data-key="ebops">{_e(_num(report.ebops))}</span></p>')
    return _section("Latency and resources per source", "".join(parts), "costs")


def _resource_bars(report: Report) -> Any:
    import matplotlib.pyplot as plt
    import numpy as np

    sources = list(report.resources)
    metrics = ("lut", "ff")
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / len(metrics)
    for i, m in enumerate(metrics):
        vals = [getattr(report.resources[s], m) or 0 for s in sources]
        bars = ax.barh(np.arange(len(sources)) + i * width, vals, height=width, label=m.upper())
        ax.bar_label(bars, labels=[f"{v:,}" for v in vals], fontsize=7, padding=2)
    ax.set_yticks(np.arange(len(sources)) + width / 2, sources)
    ax.set_xlabel("count (LUT / FF)")
    ax.set_title("resources by source (a missing count is drawn as 0)", fontsize=10)
    ax.legend(fontsize=8)
    ax.margins(x=0.15)
    return fig


def _layers(report: Report) -> str:
    layers = report.layers
    if not layers:
        return _section("Where the LUTs go", _not_run("no per-layer figures in this report (built by a fastml "
                                                      "that did not record them)"), "layers")
    if not layers.get("rows"):
        return _section("Where the LUTs go", _not_run(str(layers.get("not_run", "no per-layer figures"))
                                                      .removeprefix(NOT_RUN + ": ")), "layers")
    rows = []
    for i, r in enumerate(layers["rows"]):
        stages = r.get("stages")
        rows.append([_e(r.get("layer")), _e(r.get("type")), _cell(r.get("lut"), f"layers.rows.{i}.lut"),
                     _cell(r.get("adders"), f"layers.rows.{i}.adders"),
                     _cell(r.get("lookups"), f"layers.rows.{i}.lookups"),
                     _cell(r.get("ebops"), f"layers.rows.{i}.ebops"), _cell(r.get("elements")),
                     f'<td class="n">{_e(r.get("bits_min"))}–{_e(r.get("bits_max"))}</td>',
                     _cell(r.get("bits_total"), f"layers.rows.{i}.bits_total"),
                     _cell(r.get("delay"), f"layers.rows.{i}.delay"),
                     f'<td class="n">{_e(f"{stages[0]}–{stages[1]}" if stages else "—")}</td>'])
    total = layers.get("total_lut")
    body = (f'<p class="note">Source: {_e(layers.get("source", ""))}; total '
            f'<span data-key="layers.total_lut">{_e(_num(total))}</span> LUT '
            f"(the whole model's figures are in the resources table). Stages at "
            f'{_e(layers.get("cutoff"))} delay units per stage.</p>'
            + _table(["layer", "type", "LUT", "adders", "lookup tables", "EBOPs", "outputs", "output bits",
                      "bits total", "delay", "stages"], rows, cls="sortable")
            + _figure(lambda: _layer_bars(report), "LUT per layer"))
    for what, why in (layers.get("not_run") or {}).items() if isinstance(layers.get("not_run"), dict) else ():
        body += _not_run(f"{what} per layer: {why}")
    return _section("Where the LUTs go (per layer)", body, "layers")


def _layer_bars(report: Report) -> Any:
    import matplotlib.pyplot as plt

    rows = report.layers["rows"]
    names = [r["layer"] for r in rows]
    luts = [float(r.get("lut") or 0) for r in rows]
    total = sum(luts)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    bars = ax.barh(range(len(rows)), luts, color="tab:orange")
    ax.bar_label(bars, labels=[f"{v:,.0f} ({100 * v / total:.0f}%)" if total else f"{v:,.0f}" for v in luts],
                 fontsize=8, padding=2)
    ax.set_yticks(range(len(rows)), names, fontsize=8)
    ax.invert_yaxis()  # first layer on top, as in the table
    ax.set_xlabel("LUT (da4ml cost model)")
    ax.set_title(f"LUT per layer (total {total:,.0f})", fontsize=10)
    ax.margins(x=0.2)
    return fig


def _training(report: Report) -> str:
    selection = report.model.get("selection") or {}
    if not selection.get("pareto"):
        why = (f"model trained elsewhere ({selection['train']})" if "train" in selection
               else "no training front recorded (a model kind without HGQ2 checkpoints)")
        return _section("Training front", _not_run(why), "training")
    from .plots import training_front  # deferred: matplotlib loads only when a page draws a figure

    chosen = selection.get("chosen")
    kept = (selection["pareto"][chosen] if isinstance(chosen, int) and 0 <= chosen < len(selection["pareto"])
            else None)
    text = (f"<p>Kept: epoch {_e(kept.get('epoch', '?'))}, {_e(_num(kept.get('ebops')))} EBOPs, validation accuracy "
            f"{_e(_num(kept.get('val_accuracy'), True))} (rule {_e(selection.get('rule', '?'))}).</p>" if kept else "")
    return _section("Training front", text + _figure(lambda: training_front(
        selection, title=f"{report.name}: training checkpoints"), "training front"), "training")


def _timings(report: Report) -> str:
    if not report.timings_s:
        return _section("Wall time per stage", _not_run("no timings recorded"), "timings")
    rows = [[_e(k), _cell(v, f"timings_s.{k}")] for k, v in report.timings_s.items()]

    def bars() -> Any:
        import matplotlib.pyplot as plt

        top = {k: v for k, v in report.timings_s.items() if "." not in k}
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(top) + 1.2))
        b = ax.barh(list(top), list(top.values()), color="tab:blue")
        ax.bar_label(b, labels=[f"{v:.1f} s" for v in top.values()], fontsize=8, padding=2)
        ax.invert_yaxis()
        ax.set_xlabel("wall time (s)")
        ax.set_title(f"wall time per stage (total {sum(top.values()):.1f} s)", fontsize=10)
        ax.margins(x=0.15)
        return fig

    return _section("Wall time per stage", '<div class="side"><div>' + _table(["stage", "seconds"], rows)
                    + "</div><div>" + _figure(bars, "wall time per stage") + "</div></div>", "timings")


def _diagnosis(report: Report, diagnosis: Mapping[str, Any] | None) -> str:
    exact = bool(report.verification) and all(v.mismatches == 0 for v in report.verification.values())
    if diagnosis is None:
        if exact and report.status == "ok":
            return ""
        return _section("Diagnosis", _not_run("the firmware is not bit-exact; run `fastml diagnose PROJECT` (it "
                                              "writes diagnosis.json), then `fastml report PROJECT`"), "diagnosis")
    parts = [f"<p>{_e(diagnosis.get('backend'))} firmware ({_e(diagnosis.get('firmware'))}) vs "
             f"{_e(diagnosis.get('reference'))}, {_e(diagnosis.get('events'))} events.</p>"]
    if diagnosis.get("not_run"):
        parts.append(_not_run(f"per-layer comparison: {diagnosis['not_run']}"))
    first = diagnosis.get("first_divergent_layer")
    parts.append(f"<p><b>First divergent layer:</b> {_e(first or 'none')}"
                 + (f" — cause {_e(diagnosis.get('cause'))}: {_e(diagnosis.get('hint'))}" if first else "") + "</p>")
    rows = []
    for ly in diagnosis.get("layers") or []:
        cls = "worse" if ly.get("name") == first else ""
        status = str(ly.get("status"))
        badge = "pass" if status in ("match", "trimmed") else "fail" if status == "diverges" else status
        rows.append([f'<td class="{cls}">{_e(ly.get("name"))}</td>', _e(ly.get("operation", "")),
                     f"<td>{_status_badge(badge)} {_e(status)}</td>", _cell(ly.get("elements")),
                     _cell(ly.get("mismatched_elements")), _cell(ly.get("mismatched_events")),
                     _e(ly.get("precision") or ""), _e(ly.get("hint") or "")])
    if rows:
        parts.append(_table(["layer", "operation", "status", "elements", "mismatched elements", "mismatched events",
                             "type", "hint"], rows))
    parts += [f'<p class="note">{_e(n)}</p>' for n in diagnosis.get("notes") or []]
    return _section("Diagnosis", "".join(parts), "diagnosis")


# ------------------------------------------------------------------------------------------ baseline


def _flat_figures(report: Report) -> dict[str, Any]:
    """The figures a comparison shows, by dotted path into report.json (numbers only)."""
    out: dict[str, Any] = {}
    for which in ("float", "quantized", "firmware"):
        out[f"accuracy.{which}"] = getattr(report.accuracy, which)
    for src, lat in report.latency_by_source.items():
        out[f"latency_by_source.{src}.cycles"] = lat.cycles
        out[f"latency_by_source.{src}.ns"] = lat.ns
    for src, res in report.resources.items():
        for m in ("lut", "ff", "dsp", "bram"):
            out[f"resources.{src}.{m}"] = getattr(res, m)
    out["ebops"] = report.ebops
    for level, v in report.verification.items():
        out[f"verification.{level}.mismatches"] = v.mismatches
    for row in report.layers.get("rows") or []:
        out[f"layer {row.get('layer')} LUT"] = row.get("lut")
    for stage, s in report.timings_s.items():
        if "." not in stage:
            out[f"timings_s.{stage}"] = s
    return out


#: Figures for which a higher value is better (everything else — costs, mismatches, time — is better lower).
_HIGHER_IS_BETTER = ("accuracy.",)


def _comparison(report: Report, baseline: Report, gate: Mapping[str, Any] | None) -> str:
    new, old = _flat_figures(report), _flat_figures(baseline)
    rows = []
    for key in list(dict.fromkeys([*new, *old])):
        a, b = new.get(key), old.get(key)
        cls, change = "", ""
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            delta = a - b
            if delta:
                up_good = key.startswith(_HIGHER_IS_BETTER)
                cls = "better" if (delta > 0) == up_good else "worse"
                change = f"{delta:+,.4g}" + (f" ({100 * delta / abs(b):+.1f}%)" if b else "")
        rows.append([_e(key), _cell(b, cls=cls), _cell(a, cls=cls),
                     f'<td class="n {cls}">{_e(change)}</td>'])
    body = (f"<p>This build (<b>{_e(report.name)}</b>, config {_e(report.config_hash[:12])}) against the baseline "
            f"(config {_e(baseline.config_hash[:12])}, created {_e(baseline.created or NOT_RUN)}). Green: better, "
            "red: worse.</p>" + _table(["figure", "baseline", "this build", "change"], rows))
    if gate is not None and gate.get("changes"):
        body += "<h3>What <code>fastml check --baseline</code> compares</h3>" + _table(
            ["metric", "source", "baseline", "value", "change"],
            [[_e(c["metric"]), _e(c["source"]), _cell(c["baseline"]), _cell(c["value"]), _e(c["change"])]
             for c in gate["changes"]])
    return _section("Compared with the baseline", body, "baseline")


# ------------------------------------------------------------------------------------------ the page


def _page(title: str, body: str, data: Mapping[str, Any] | None = None) -> str:
    embedded = ""
    if data is not None:
        # "</script>" in a string would end the element early: no "<" at all (JSON reads \u003c back as "<")
        text = json.dumps(data, sort_keys=True).replace("<", "\\u003c")
        embedded = f'<script type="application/json" id="report-json">{text}</script>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            # no network, ever: only inline styles, scripts and data: images may load
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>{body}</main>"
            f"{embedded}<script>{_SORT_JS}</script></body></html>\n")


def render_html(report: Report, project_dir: str | Path | None = None, gate: Mapping[str, Any] | None = None,
                gate_why: str | None = None, diagnosis: Mapping[str, Any] | None = None,
                baseline: Report | None = None) -> str:
    """The build's page as a string (nothing written).

    ``project_dir``: the built project (its ``model/verify_inputs.npz`` gives the curves); ``gate``: the budget
    gate as ``GateResult.to_dict()`` (``gate_why`` says why there is none); ``diagnosis``: ``diagnosis.json``'s
    content; ``baseline``: another build's report to compare with, side by side.
    """
    pdir = Path(project_dir) if project_dir is not None else None
    title_extra = f" <span class=\"meta\">vs baseline {_e(baseline.name)}</span>" if baseline is not None else ""
    body = [_header(report, title_extra), _cards(report)]
    if baseline is not None:
        body.append(_comparison(report, baseline, gate))
    body += [_checks(report, gate, gate_why), _bit_exact(report), _diagnosis(report, diagnosis),
             _accuracy(report, pdir), _float_edges(report), _costs(report), _layers(report), _training(report),
             _timings(report)]
    data = report.model_dump(mode="json")
    return _page(f"fastml: {report.name}", "".join(body), data)


def write_html(report: Report, project_dir: str | Path, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Render and write ``report.html`` (or ``out``) atomically: a failed render leaves the old page as it was."""
    project_dir = Path(project_dir)
    path = Path(out) if out is not None else project_dir / HTML_FILE
    text = render_html(report, project_dir, **kwargs)  # fully rendered before anything is written
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text)
    return path


# ------------------------------------------------------------------------------------------ a scan


def _svg(fig: Any) -> str:
    """``fig`` as inline SVG (so its points can be links: matplotlib writes each artist's ``url``)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # text as text, not glyph paths: smaller, and no glyph ids shared between two figures of one page
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: not allowed inside HTML


def _scan_front(points: Sequence[Mapping[str, Any]], x_key: str, x_label: str, title: str) -> str:
    """Accuracy vs ``x_key`` of the scan's points, the Pareto front as a step line; a point with a page links to it."""
    drawn = [p for p in points if isinstance(p.get(x_key), (int, float)) and p.get(x_key) == p.get(x_key)]
    if not drawn:
        return _not_run(f"{title}: no point has both an accuracy and {x_label}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        from .plots import pareto_front  # deferred: matplotlib loads only when a page draws a figure

        pts = [{"lut": float(p[x_key]), "accuracy": float(p["accuracy"]), "label": p.get("label")} for p in drawn]
        fig = pareto_front(pts, x_key="lut", x_label=x_label, colour_key=None, title=title,
                           y_label="accuracy, quantized model (%)")
        ax = fig.axes[0]
        for p in drawn:  # one invisible-to-the-eye marker per point, carrying its link
            if p.get("href"):
                dot = ax.scatter([float(p[x_key])], [100 * float(p["accuracy"])], s=120, alpha=0.01, zorder=5)
                dot.set_urls([str(p["href"])])
        return _svg(fig)
    except Exception as err:  # a figure is extra: the page says why it is missing, never fails
        return _not_run(f"{title}: {type(err).__name__}: {str(err)[:200]}")


def render_scan_html(name: str, rows: Sequence[Mapping[str, Any]], points: Sequence[Mapping[str, Any]],
                     front: str = "lut", counts: Mapping[str, int] | None = None) -> str:
    """``scan.html``: the scan's Pareto fronts (accuracy vs LUT and vs latency; a point links to its project's
    ``report.html``) and its table, sortable by any column.

    ``rows``: the scan table's records (``scan.parquet``), each optionally with ``href`` (the point's page,
    relative to the scan folder); ``points``: ``{point, accuracy, x, latency_ns, label, href}`` per point with
    figures (``x`` is the front's resource figure: ``front`` names it).
    """
    x_label = "estimated LUTs (da4ml cost model)" if front == "lut" else "EBOPs (HGQ2)"
    summary = ", ".join(f"{k} {v}" for k, v in (counts or {}).items())
    body = [f"<h1>scan {_e(name)}</h1><p class=\"meta\">{_e(summary)}</p>"]
    figs = ('<div class="side"><div>' + _scan_front(points, "x", x_label, f"accuracy vs {front}") + "</div><div>"
            + _scan_front(points, "latency_ns", "latency (ns)", "accuracy vs latency") + "</div></div>"
            '<p class="note">Red line: the Pareto front. Click a point to open its build report (points that were '
            "only estimated have none).</p>")
    body.append(_section("Pareto fronts", figs, "front"))
    columns = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("href", "project")]
    table_rows = []
    for i, r in enumerate(rows):
        link = (f'<td><a href="{_e(r["href"])}">report</a></td>' if r.get("href")
                else '<td class="note">no page (not built)</td>')
        table_rows.append([link] + [_cell(r.get(c), f"rows.{i}.{c}") if isinstance(r.get(c), (int, float))
                                    and not isinstance(r.get(c), bool) else _e(_num(r.get(c))) for c in columns])
    body.append(_section("Points", _table(["page", *columns], table_rows, cls="sortable"), "points"))
    return _page(f"fastml scan: {name}", "".join(body), {"rows": [dict(r) for r in rows]})


def write_scan_html(folder: str | Path, name: str, rows: Sequence[Mapping[str, Any]],
                    points: Sequence[Mapping[str, Any]], front: str = "lut",
                    counts: Mapping[str, int] | None = None) -> Path:
    """Render and write ``scan.html`` into ``folder``, atomically."""
    path = Path(folder) / SCAN_HTML_FILE
    text = render_scan_html(name, rows, points, front, counts)
    _atomic_write(path, text)
    return path


__all__ = ["HTML_FILE", "SCAN_HTML_FILE", "budget_margin", "render_html", "render_scan_html", "write_html",
           "write_scan_html"]
