"""The whole flow, top-down: config → data → train → convert → verify → estimate → report.

``build(cfg)`` is what ``fastml build`` runs; each stage is also callable on its own from a notebook.
The project is assembled in a temporary sibling folder and moved into place only when complete, so
a failed build never damages the last good project; a failed one is kept as ``<name>.failed/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import FastmlError, ToolError, VerificationError
from .guards import check_model_size, tool_watchdog
from .report import Report, package_versions, write_report

if TYPE_CHECKING:
    from .backends import FirmwareProject
    from .config import BuildConfig
    from .data import Dataset
    from .models import TrainedModel


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
    from .models import kind_of

    kind_of(cfg).save(trained, project_dir / "model")


def _estimate(project: FirmwareProject, trained: TrainedModel, cfg: BuildConfig, report: Report,
              log: Callable[[str], None]) -> None:
    """Fill latency/resources from the backend and the open tools; a tool that cannot run says why."""
    from . import estimate

    report.resources.update(project.resources)
    if project.latency is not None:
        report.set_latency(project.latency)
    fw = cfg.firmware
    if fw.backend == "hls4ml" and "da4ml_estimate" not in report.resources:
        try:
            if not hasattr(trained.model, "layers"):  # e.g. a QONNX graph
                what = "an ONNX graph" if trained.kind == "qonnx" else f"a {type(trained.model).__name__}"
                raise FastmlError(f"da4ml traces Keras (HGQ2) models only; model.kind {trained.kind!r} gives {what}")
            resources, latency = estimate.da4ml_estimate(trained.model, cfg)
        except FastmlError as err:  # e.g. an imported model's rounding mode da4ml cannot trace: say why, go on
            report.checks["da4ml_estimate"] = f"not run: {err}"
            log(f"da4ml estimate: {err}")
        else:
            report.resources["da4ml_estimate"] = resources
            report.set_latency(latency)
    # yosys needs HDL: da4ml's RTL, or conifer's VHDL (via ghdl); hls4ml has none before Vitis HLS.
    yosys_for_project = {"rtl": estimate.rtl_yosys_resources,
                         "conifer": estimate.conifer_vhdl_yosys_resources if fw.conifer_backend == "vhdl" else None,
                         }.get(fw.backend)
    if yosys_for_project is None:
        return
    if not fw.yosys:
        report.checks["yosys"] = "not run: firmware.yosys is false"
        return
    try:
        report.resources["yosys"] = yosys_for_project(project.path, fw.part,
                                                      log_path=project.path.parent / "logs" / "yosys.log")
        report.checks["yosys"] = "pass"
    except ToolError as err:
        report.checks["yosys"] = f"not run: {err}"
        log(f"yosys: {err}")


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
    from .project_lock import project_lock

    with project_lock(cfg.project_dir, log):
        return _build(cfg, quick, progress, log, force)


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
    from .data import load_data
    from .models import train

    with timer.stage("data"):
        data = load_data(cfg.data, cfg.config_dir, max_samples=QUICK.max_samples if quick else None)
        report.data = data.summary()
    with timer.stage("train"):
        trained = train(cfg, data, epochs=QUICK.epochs if quick else None, progress=progress)
        report.ebops = trained.ebops
        report.model = {"kind": trained.kind, "selection": trained.selection}
    return data, trained


def _build(cfg: BuildConfig, quick: bool, progress: bool, log: Callable[[str], None], force: bool) -> Report:
    from .backends import convert
    from .models import kind_of
    from .verification import accuracy, require_bit_exact, roc_auc_per_class, verify_project

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
            _estimate(project, trained, cfg, report, log)
        with timer.stage("save"):
            _save_inputs(tmp, cfg, data, x_verify, reference, y_test)
            _save_model(tmp, cfg, trained)
        report.timings_s = {**timer.timings_s, **{f"convert.{k}": v for k, v in project.timings_s.items()}}
        try:
            require_bit_exact(report.verification, cfg.budgets.max_mismatches)
        except VerificationError as err:
            report.status = "failed"
            write_report(report, tmp)
            raise VerificationError(f"{err}; run `fastml diagnose {cfg.project_dir}.failed` to find the first "
                                    "diverging layer") from None
        write_report(report, tmp)
        _point_paths_at_final(tmp, cfg.project_dir)
    return report


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


__all__ = ["QUICK", "build", "staging_dir", "summary_lines", "verification_events"]
