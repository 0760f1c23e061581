"""The whole flow, top-down: recipe → data → train → convert → verify → estimate → report.

``build(cfg)`` is what ``fastml build`` runs; each stage is also callable on its own from a notebook.
The project is assembled in a temporary sibling folder and moved into place only when complete, so
a failed build never damages the last good project; a failed one is kept as ``<name>.failed/``.

``build_model(model, data, ...)`` is the same build for a ``keras.Model`` in a notebook: it is
``fastml build`` of a ``kind: keras`` recipe that this function writes for you. The model is saved
(``model.save``) and, when the data are arrays, they are saved too, both under
``<output_dir>/.fastml-inputs/`` named by their SHA-256 (so a later call never overwrites what an earlier
project points at); the recipe, with paths relative to the project folder, is what the project keeps as
``config.yaml``, so ``fastml build <output_dir>/<name>/config.yaml`` rebuilds the same firmware.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._internal.guards import check_model_size, tool_watchdog
from ._internal.keras_backend import ensure_backend
from ._internal.project_lock import project_lock
from .backends import convert, get_backend, layer_check
from .data import Dataset, load_data
from .errors import ConfigError, FastmlError, VerificationError
from .estimate import estimate_build
from .gate import check_budgets
from .metrics import accuracy, roc_auc_per_class
from .models import TrainedModel, kind_of
from .models import train as train_model
from .recipe import BudgetsConfig, BuildConfig, parse_config
from .report import Report, float_edges, package_versions, write_report
from .report.html import write_html
from .verification import require_bit_exact, verify_project
from .verification.layers import DIAGNOSIS_FILE


@dataclass(frozen=True)
class QuickSettings:
    """``--quick``: the same path on less data and fewer epochs (at least 1 000 verified events)."""

    max_samples: int = 15_000
    epochs: int = 3
    verify_samples: int = 2_000


QUICK = QuickSettings()


class StageTimer:
    """Collects wall time per stage, in the order stages ran."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.timings_s: dict[str, float] = {}
        self._log = log

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._log(f"[{name}] ...")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[name] = round(time.perf_counter() - t0, 3)
            self._log(f"[{name}] {self.timings_s[name]:.1f} s")


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder next to ``final``, moved onto ``final`` only if the block succeeds.

    On failure the staging folder is kept as ``<final>.failed`` (replacing an older failed one) and
    ``final`` is left exactly as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        failed = final.with_name(final.name + ".failed")
        shutil.rmtree(failed, ignore_errors=True)
        os.replace(tmp, failed)
        raise
    backup = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, backup)
    os.replace(tmp, final)
    shutil.rmtree(backup, ignore_errors=True)


def verification_events(data: Dataset, n: int) -> tuple[np.ndarray, int]:
    """The first ``n`` held-out events: test split first, then validation if the test split is short.

    Returns the events and how many of them come from the test split (accuracies use only those).
    """
    x = np.concatenate([data.x_test, data.x_val])[:n]
    return x, min(n, len(data.x_test))


def _save_inputs(project_dir: Path, cfg: BuildConfig, data: Dataset, x_verify: np.ndarray,
                 reference: np.ndarray, labels: np.ndarray) -> None:
    """Recipe copy, input scaling, and the verification events: ``x``, reference outputs ``y_ref`` and
    ``labels``, the true classes of the first ``len(labels)`` events (those from the test split)."""
    model_dir = project_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "config.yaml").write_text(cfg.to_yaml())
    (model_dir / "scaler.json").write_text(json.dumps(
        {"features": list(data.feature_names), **data.scaler.to_dict(),
         "note": "firmware input = (raw feature - offset) / scale, then the model's input quantiser"}, indent=1))
    np.savez_compressed(model_dir / "verify_inputs.npz", x=x_verify, y_ref=reference, labels=labels)


def _save_model(project_dir: Path, cfg: BuildConfig, trained: TrainedModel) -> None:
    kind_of(cfg).save(trained, project_dir / "model")


def build(cfg: BuildConfig, quick: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, force: bool = False) -> Report:
    """Build, verify and report ``cfg``; returns the report written to ``cfg.project_dir``.

    Raises ``VerificationError`` when the firmware is not bit-exact (more than
    ``budgets.max_mismatches`` differing outputs); the failed project is then kept as
    ``<name>.failed/`` with its report, and the previous good project is untouched.
    Holds the project's lock throughout (``BuildLockedError`` if another build of it runs) and first
    cleans up after killed builds. ``ResourceLimitError`` if the model exceeds ``firmware.max_weights``
    (unless ``force``); ``ToolError`` if a tool runs past ``firmware.tool_timeout_s``.
    """
    with project_lock(cfg.project_dir, log):
        return _build(cfg, quick, progress, log, force)


def train(cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True) -> TrainedModel:
    """Train (or load) the recipe's model, its backend checking first that it can build every layer of a model
    the kind loads or rebuilds (``fastml.train``; a one-line ``ConfigError`` names the layer)."""
    return train_model(cfg, data, epochs=epochs, progress=progress, check_layers=layer_check(cfg))


def new_report(cfg: BuildConfig) -> Report:
    """An empty report for ``cfg``: name, backend, config hash, budgets, time stamp and package versions."""
    return Report(name=cfg.name, backend=cfg.firmware.backend, config_hash=cfg.config_hash(),
                  config_path=cfg.source_path, budgets=cfg.budgets.model_dump(mode="json"),
                  created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                  versions=package_versions())


def data_and_train(cfg: BuildConfig, report: Report, timer: StageTimer, quick: bool, progress: bool
                   ) -> tuple[Dataset, TrainedModel]:
    """The ``data`` and ``train`` stages every build (and a scan's estimate phase) starts with; fills
    ``report.data``, ``report.ebops`` and ``report.model``."""
    with timer.stage("data"):
        data = load_data(cfg.data, cfg.config_dir, max_samples=QUICK.max_samples if quick else None)
        report.data = data.summary()
    with timer.stage("train"):
        trained = train(cfg, data, epochs=QUICK.epochs if quick else None, progress=progress)
        report.ebops = trained.ebops
        report.model = {"kind": trained.kind, "selection": trained.selection}
    return data, trained


def _build(cfg: BuildConfig, quick: bool, progress: bool, log: Callable[[str], None], force: bool) -> Report:
    timer = StageTimer(log)
    report = new_report(cfg)
    data, trained = data_and_train(cfg, report, timer, quick, progress)
    check_model_size(trained.model, cfg.firmware.max_weights, force)  # before the long conversion
    n_verify = min(cfg.verify.samples, QUICK.verify_samples) if quick else cfg.verify.samples
    x_verify, n_test = verification_events(data, n_verify)
    if len(x_verify) < n_verify:
        log(f"warning: only {len(x_verify)} held-out events for verify.samples={n_verify}")
    y_test = data.y_test[:n_test]

    with staging_dir(cfg.project_dir) as tmp, tool_watchdog(cfg.firmware.tool_timeout_s, "the firmware tools"):
        with timer.stage("convert"):
            project = convert(trained, cfg, tmp)
            report.firmware = {**project.info, "path": str(cfg.project_dir / "firmware")}
        with timer.stage("verify"):
            outputs: dict[str, np.ndarray] = {}
            report.verification, reference = verify_project(project, x_verify, outputs)
            # accuracy.firmware comes from the first level that ran; none ran -> it stays "not run"
            scores = {"quantized": reference[:n_test]}
            if outputs:
                scores["firmware"] = next(iter(outputs.values()))[:n_test]
            if trained.predict_float is not None:
                scores = {"float": trained.predict_float(x_verify[:n_test]), **scores}
            # the kind's task decides the figures: classifiers accuracy + per-class AUC (None), others their own
            # (anomaly detection: efficiency at rate per signal; teacher-student: agreement) and a headline
            task = kind_of(cfg).task_metrics(trained, scores, y_test, data)
            if task is not None:
                headline, report.task = task
                for which, value in headline.items():
                    setattr(report.accuracy, which, value)
            for which, s in scores.items() if task is None else ():
                setattr(report.accuracy, which, accuracy(s, y_test))
                report.auc[which] = roc_auc_per_class(s, y_test, data.class_names)
            for level, v in report.verification.items():
                report.checks[f"bit_exact_{level}"] = "pass" if v.mismatches <= cfg.budgets.max_mismatches else "fail"
            for level, why in project.not_run.items():
                report.checks[f"bit_exact_{level}"] = f"not run: {why}"
        with timer.stage("estimate"):
            estimate_build(project, trained, cfg, report, log)
        with timer.stage("save"):
            _save_inputs(tmp, cfg, data, x_verify, reference, y_test)
            _save_model(tmp, cfg, trained)
            # vectors of the same events the build verified, for the integrator's simulator (firmware/tb/)
            report.firmware = {**report.firmware, "testbench": get_backend(cfg.firmware.backend).testbench(
                tmp, x_verify, reference)}
        report.timings_s = {**timer.timings_s, **{f"convert.{k}": v for k, v in project.timings_s.items()}}
        try:
            require_bit_exact(report.verification, cfg.budgets.max_mismatches)
        except VerificationError as err:
            report.status = "failed"
            write_report(report, tmp)
            write_html_report(tmp, report)
            raise VerificationError(f"{err}; run `fastml diagnose {cfg.project_dir}.failed` to find the first "
                                    "diverging layer") from None
        write_report(report, tmp)
        write_html_report(tmp, report)
        _point_paths_at_final(tmp, cfg.project_dir)
    return report


def write_html_report(project_dir: Path, report: Report, baseline: Report | None = None,
                      out: Path | None = None) -> Path:
    """``report.html`` of a project (or ``out``): the report with what the page needs from the layers above the
    report — the budget gate on the report's own budgets (against ``baseline`` if given) and ``diagnosis.json``
    where ``fastml diagnose`` wrote one. Written atomically."""
    gate, gate_why = None, None
    try:
        gate = check_budgets(report, BudgetsConfig.model_validate(report.budgets), baseline).to_dict()
    except (ValueError, FastmlError) as err:  # budgets a newer/older fastml wrote: the page says so, still renders
        gate_why = f"the report's budgets do not validate: {' '.join(str(err).split())[:200]}"
    diagnosis = None
    diag_file = project_dir / DIAGNOSIS_FILE
    if diag_file.is_file():
        try:
            diagnosis = json.loads(diag_file.read_text())
        except (OSError, ValueError):
            diagnosis = {"not_run": f"{DIAGNOSIS_FILE} is not readable JSON"}
    return write_html(report, project_dir, out=out, gate=gate, gate_why=gate_why, diagnosis=diagnosis,
                      baseline=baseline)


def _point_paths_at_final(tmp: Path, final: Path) -> None:
    """Rewrite absolute staging paths that tools wrote into project files (e.g. hls4ml's OutputDir).

    The move into place happens right after; without this, ``hls4ml_config.yml`` would point at
    the deleted staging folder.
    """
    for pattern in ("*.yml", "*.yaml", "*.tcl", "*.json", "*.sh"):
        for f in (tmp / "firmware").glob(pattern):
            text = f.read_text()
            if str(tmp) in text:
                f.write_text(text.replace(str(tmp), str(final.resolve())))


def summary_lines(report: Report) -> list[str]:
    """A few lines a person reads after ``fastml build``."""
    acc = report.accuracy

    def pct(v: float | None) -> str:
        return "not run" if v is None else f"{100 * v:.2f}%"

    lines = [f"{report.name}: {report.backend} build {report.status}"]
    selection = report.model.get("selection") or {}
    if "train" in selection:  # an imported model: built as it is
        lines.append(f"  train: {selection['train']}; calibrated: {'yes' if selection.get('calibrated') else 'no'}")
    for edge in float_edges(report):
        lines.append(f"  float edge [{edge.get('edge')}] {edge.get('where')}: {edge.get('choice')}")
    for level, v in report.verification.items():
        lines.append(f"  bit-exact {level:8s}: {v.mismatches} mismatches on {v.samples} events "
                     f"({v.samples * (v.outputs or 1)} outputs) vs {v.reference}")
    lines.append(f"  accuracy: float {pct(acc.float)}, quantized {pct(acc.quantized)}, firmware {pct(acc.firmware)}")
    if "firmware" in report.auc:
        lines.append("  AUC (firmware): " + ", ".join(f"{k} {v:.3f}" for k, v in report.auc["firmware"].items()))
    lat = report.latency
    lines.append(f"  latency: {lat.cycles if lat.cycles is not None else 'not run'} cycles, "
                 f"{f'{lat.ns:.1f} ns' if lat.ns is not None else 'not run'} ({lat.source})")
    for source, r in report.resources.items():
        lines.append(f"  resources [{source}]: LUT {r.lut}, FF {r.ff}, DSP {r.dsp}, BRAM {r.bram}")
    if report.ebops is not None:
        lines.append(f"  EBOPs: {report.ebops:.0f}")
    lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in report.timings_s.items() if "." not in k))
    return lines


#: Folder (inside ``output_dir``) holding the models and arrays notebook builds were made from.
INPUTS_DIR = ".fastml-inputs"


def _store(folder: Path, suffix: str, write: Callable[[Path], None]) -> Path:
    """Write a file with ``write`` and keep it as ``<sha256[:16]><suffix>`` in ``folder`` (atomic rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
        final = folder / f"{digest}{suffix}"
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _data_section(data: Any, inputs: Path, project_dir: Path) -> dict[str, Any]:
    """The recipe's ``data:`` section for what the notebook passed (arrays are stored in ``inputs``)."""
    if isinstance(data, str):
        data = {"source": data}
    elif hasattr(data, "model_dump"):  # a DataConfig
        data = data.model_dump(mode="json")
    if isinstance(data, Mapping):
        section = dict(data)
        source = str(section.get("source", "builtin:jets_hlf"))
        if ":" not in source.split("/")[0]:  # a file: relative to the notebook, made relative to the project
            section["source"] = os.path.relpath(Path(source).resolve(), project_dir.resolve())
        return section
    if isinstance(data, Dataset):
        # the splits, in order, already scaled; the recipe re-splits these events with its split seed
        x = np.concatenate([data.x_train, data.x_val, data.x_test])
        y = np.concatenate([data.y_train, data.y_val, data.y_test])
        extra: dict[str, Any] = {"scaling": "none"}
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(a) for a in data)
        extra = {}
    else:
        raise ConfigError(f"build_model: data: expected a data.source string (e.g. 'builtin:jets_hlf' or a file), "
                          f"a data section dict, a Dataset or an (x, y) pair of arrays; got {type(data).__name__}")
    if len(x) != len(y):
        raise ConfigError(f"build_model: data: x has {len(x)} events, y has {len(y)}; expected the same number")
    path = _store(inputs, ".npz", lambda p: np.savez(p, x=np.asarray(x, np.float32), y=np.asarray(y)))
    return {"source": os.path.relpath(path.resolve(), project_dir.resolve()), **extra}


def build_model(model: Any, data: Any, *, name: str = "my_model", firmware: Mapping[str, Any] | None = None,
                verify: Mapping[str, Any] | None = None, budgets: Mapping[str, Any] | None = None,
                output_dir: str | Path = "hls_projects", calibrate: bool = False, trust_code: bool = False,
                quick: bool = False, progress: bool = False, log: Callable[[str], None] = print,
                force: bool = False) -> Report:
    """Build verified firmware of an in-memory HGQ2 ``keras.Model``; returns the same ``Report`` as ``fastml.build``.

    ``data``: a ``data.source`` string (``"builtin:jets_hlf"``, a file path), a ``data:`` section dict, a
    ``Dataset`` (its events are stored already scaled, and re-split by the recipe's seed), or an ``(x, y)``
    pair (stored, split and scaled as any data file). ``firmware`` / ``verify`` / ``budgets``: the recipe
    sections (``fastml/recipe.py``), e.g. ``firmware={"backend": "rtl"}``. ``calibrate``: re-run HGQ2's
    ``trace_minmax`` on the training split first. Bad input raises a one-line ``ConfigError`` before
    anything is compiled; the project lands in ``<output_dir>/<name>/`` with the recipe that reproduces it.
    """
    ensure_backend()
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(f"build_model: model: expected a keras.Model (e.g. an HGQ2 network), got "
                          f"{type(model).__name__}")
    output_dir = Path(output_dir)
    project_dir = output_dir / name
    inputs = output_dir / INPUTS_DIR
    model_file = _store(inputs, ".keras", lambda p: model.save(p))
    raw = {
        "name": name,
        "description": "built from a notebook with fastml.build_model",
        "data": _data_section(data, inputs, project_dir),
        "model": {"kind": "keras", "path": os.path.relpath(model_file.resolve(), project_dir.resolve()),
                  "calibrate": calibrate, "trust_code": trust_code},
        "firmware": {**(firmware or {}), "output_dir": str(output_dir)},
        "verify": dict(verify or {}),
        "budgets": dict(budgets or {}),
    }
    # The recipe is read as if it were the project's own config.yaml, so its relative paths hold for both.
    cfg = parse_config(raw, project_dir.resolve() / "config.yaml")
    return build(cfg, quick=quick, progress=progress, log=log, force=force)


__all__ = ["QUICK", "build", "build_model", "staging_dir", "summary_lines", "train", "verification_events",
           "write_html_report"]
