"""What runs on a Dask worker: one scan point, one phase, into the point's own project folder.

A task gets a small dict (the base recipe's path, the point's overrides, the phase) and returns a
small dict (the point's figures): no Keras model ever travels through the scheduler. The worker
re-validates the recipe itself, so it needs only the recipe and the data path (a shared file system
for file data and for the output folder; ``builtin:`` data ships with fastml).

Phase ``estimate``: HGQ2 training and da4ml's cost model, no conversion or compilation; the project
gets the recipe copy and a report whose bit-exact checks say "not run: phase-1 estimate". Phase
``firmware``: ``fastml.pipeline.build`` (the same pipeline as ``fastml build``), optionally followed by
``fastml synth``. Either way the project folder is replaced atomically, and its ``report.json`` carries
a ``scan`` entry (scan, point, phase, quick, varied) that ``--resume`` matches together with the config hash.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._internal.da4ml import da4ml_estimate
from .._internal.guards import check_model_size
from .._internal.project_lock import project_lock
from ..errors import FastmlError
from ..metrics import accuracy, roc_auc_per_class
from ..pipeline import QUICK, StageTimer, build, data_and_train, new_report, staging_dir, verification_events
from ..recipe import parse_config
from ..report import write_report
from ..synth import SynthResult, fold_into_report, run_synth

#: Environment of every worker process (LocalCluster: set before the process starts). One thread per
#: worker for BLAS/OpenMP: the cluster already runs one point per core, so more threads only fight over cores.
#: The XLA flags hold for older jaxlib only: JAX 0.10's CPU runtime still spreads a point over several
#: threads (measured: benchmarks/README.md, group scan); only the CPU affinity mask bounds it.
WORKER_ENV = {
    "KERAS_BACKEND": "jax",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def point_log(log_file: Path) -> Callable[[str], None]:
    """A ``log`` callable appending timestamped lines to ``log_file`` (the point's build messages)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(log_file, "a") as f:
            f.write(f"{dt.datetime.now().isoformat(timespec='seconds')} {msg}\n")

    return log


def report_row(report: Any) -> dict[str, Any]:
    """The flat figures of a report that go into the scan table (small, JSON-serialisable)."""
    row: dict[str, Any] = {
        "accuracy_float": report.accuracy.float,
        "accuracy_quantized": report.accuracy.quantized,
        "accuracy_firmware": report.accuracy.firmware,
        "ebops": report.ebops,
        "latency_cycles": report.latency.cycles,
        "latency_ns": report.latency.ns,
        "latency_source": report.latency.source,
    }
    for source, res in report.resources.items():
        for metric in ("lut", "ff", "dsp", "bram"):
            row[f"{metric}_{source}"] = getattr(res, metric)
    levels = report.verification
    row["mismatches"] = sum(v.mismatches for v in levels.values()) if levels else None
    row["verified_events"] = max((v.samples for v in levels.values()), default=None)
    bit_exact = [v for k, v in report.checks.items() if k.startswith("bit_exact_")]
    row["bit_exact"] = ("fail" if "fail" in bit_exact else "pass" if bit_exact and all(v == "pass" for v in bit_exact)
                        else "pass (some levels not run)" if "pass" in bit_exact else "not run")
    row["synth"] = report.checks.get("synth", "not run")
    return row


def train_and_estimate(cfg: Any, quick: bool = False, log: Callable[[str], None] = print) -> Any:
    """Phase 1 of a scan: train ``cfg``'s model and estimate it with da4ml, without converting or compiling.

    Writes the point's project atomically (recipe copy + ``report.json`` with accuracy float/quantized,
    EBOPs, ``da4ml_estimate`` LUT/FF and latency; bit-exact checks "not run") and returns the ``Report``.
    Uses the same data, epochs and verification events as ``fastml build`` (``--quick`` included), so
    its quantized accuracy is the one the full build of the point measures.
    """


    timer = StageTimer(log)
    report = new_report(cfg)
    data, trained = data_and_train(cfg, report, timer, quick, progress=False)
    check_model_size(trained.model, cfg.firmware.max_weights)  # da4ml on a huge model takes hours
    n_verify = min(cfg.verify.samples, QUICK.verify_samples) if quick else cfg.verify.samples
    x_verify, n_test = verification_events(data, n_verify)
    y_test = data.y_test[:n_test]
    with timer.stage("accuracy"):
        scores = {"quantized": trained.predict_quantized(x_verify[:n_test])}
        if trained.predict_float is not None:
            scores = {"float": trained.predict_float(x_verify[:n_test]), **scores}
        for which, s in scores.items():
            setattr(report.accuracy, which, accuracy(s, y_test))
            report.auc[which] = roc_auc_per_class(s, y_test, data.class_names)
    with timer.stage("estimate"):
        resources, latency = da4ml_estimate(trained.model, cfg)
        report.resources["da4ml_estimate"] = resources
        report.set_latency(latency)
    not_built = "not run: phase-1 scan estimate (train + da4ml cost model); no firmware built"
    report.checks["bit_exact"] = not_built
    report.firmware = {"built": False, "note": not_built}
    report.timings_s = timer.timings_s
    with project_lock(cfg.project_dir, log), staging_dir(cfg.project_dir) as tmp:
        (tmp / "config.yaml").write_text(cfg.to_yaml())
        write_report(report, tmp)
    return report


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Dask task: one phase of one point. Never raises for a failed build: returns ``status: failed``
    with a one-line ``reason`` (a killed worker is Dask's to retry; the scan driver records what it raises).
    """
    for key, value in WORKER_ENV.items():  # remote workers: effective only where jax is not imported yet
        os.environ.setdefault(key, value)

    t0 = time.perf_counter()
    phase: str = task["phase"]
    log = point_log(Path(task["log_file"]))
    # one line per attempt: the driver counts them (a rerun after a killed worker shows as attempt 2)
    log(f"== attempt run={task['run_id']} phase={phase} host={socket.gethostname()} pid={os.getpid()}")
    out: dict[str, Any] = {"point": task["point"], "phase": phase, "status": "ok", "reason": ""}
    try:
        cfg = parse_config(task["base_raw"], task["base_path"], task["overrides"])
        if phase == "estimate":
            report = train_and_estimate(cfg, quick=task["quick"], log=log)
        else:

            report = build(cfg, quick=task["quick"], progress=False, log=log)
            if task.get("synth"):
                report = _synth(cfg, report, log)
        report.scan = {"scan": task["scan"], "point": task["point"], "phase": phase,  # type: ignore[attr-defined]
                       "quick": task["quick"], "varied": task["varied"]}
        write_report(report, cfg.project_dir)
        out.update(report_row(report))
        out["config_hash"] = report.config_hash
    except FastmlError as err:
        out.update(status="failed", reason=_one_line(err))
    except Exception as err:  # a library bug in one point must not stop the scan; keep its trace in the log
        log(traceback.format_exc())
        out.update(status="failed", reason=_one_line(f"{type(err).__name__}: {err}"))
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    log(f"== {phase} {out['status']} in {out['wall_s']:.1f} s {out['reason']}")
    return out


def _synth(cfg: Any, report: Any, log: Callable[[str], None]) -> Any:
    """``fastml synth`` of a built point (Vitis HLS / Vivado where installed, else checks.synth 'not run')."""

    stages = list(cfg.synth.stages)
    try:
        result = run_synth(cfg.project_dir, stages, cfg.synth.timeout_s, report.backend)
    except FastmlError as err:
        result = SynthResult(project_dir=cfg.project_dir, backend=report.backend, stages=stages,
                             status="failed", message=str(err))
    log(f"synth: {result.status} {getattr(result, 'message', '')}")
    return fold_into_report(report, result)
