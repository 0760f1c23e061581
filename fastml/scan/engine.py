"""The scan driver: opens a Dask cluster, runs the two phases, resumes, and writes the table and plot.

Dask does the scheduling, retries and fault tolerance (a worker that dies mid-point has its task
rerun elsewhere; ``distributed.scheduler.allowed-failures`` bounds how often). This module only
decides what to submit, collects each point's small result dict once (futures complete once), and
writes the results.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, FastmlError
from ..recipe import read_yaml
from ..report import load_report
from ..report.html import HTML_FILE, write_scan_html
from ..report.plots import pareto_front, pareto_optimal, save_figure
from .spec import ClusterSpec, ScanPoint, ScanSpec, expand, scan_dir
from .worker import WORKER_ENV, report_row, run_point

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

#: Seconds ``--scheduler`` waits for the address to answer, and then for a first worker.
CONNECT_TIMEOUT_S = 20
WORKER_WAIT_S = 120


@dataclass
class ScanResult:
    """What a scan produced: the table (one row per point), where it was written, and the front."""

    table: pd.DataFrame
    scan_dir: Path
    table_paths: list[Path]
    plot_path: Path | None
    front: list[str]  # point names on the accuracy-vs-resources Pareto front (phase-1 figures)
    dashboard: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    html_path: Path | None = None  # scan.html: the fronts (points link to their report.html) and the table


# ------------------------------------------------------------------------------------------- clusters


def _bokeh_available() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def jobqueue_cluster(spec: ClusterSpec, source: str | None = None, jobs: int | None = None) -> Any:
    """A dask-jobqueue ``SLURMCluster`` / ``HTCondorCluster`` from the scan's ``cluster:`` section (not scaled).

    Defaults fastml needs: one thread per worker process (``processes = cores``), and the worker
    environment of ``WORKER_ENV`` exported by the job script. Other keys go to dask-jobqueue unchanged.
    """
    where = f"{source}: key 'cluster'" if source else "cluster"
    try:
        import dask_jobqueue
    except ImportError:
        raise FastmlError(f"{where}: kind {spec.kind!r} needs dask-jobqueue: install fastml's cluster extra "
                          "(.venv/bin/python -m pip install -e '.[cluster]')") from None
    cls = {"slurm": dask_jobqueue.SLURMCluster, "htcondor": dask_jobqueue.HTCondorCluster}[spec.kind]
    opts = spec.options()
    opts.setdefault("cores", 1)
    opts.setdefault("memory", "4GB")
    opts.setdefault("processes", opts["cores"])  # one thread per worker process, as on a LocalCluster
    if spec.kind == "htcondor":
        opts.setdefault("disk", "4GB")
    exports = [f"export {k}={shlex.quote(v)}" for k, v in WORKER_ENV.items()]
    opts["job_script_prologue"] = exports + list(opts.get("job_script_prologue") or [])
    try:
        return cls(**opts)
    except (TypeError, ValueError) as err:
        raise ConfigError(" ".join(f"{where}: {spec.kind} cluster rejected the options: {err}".split())) from None


@contextmanager
def open_client(workers: int | None = None, scheduler: str | None = None, cluster: ClusterSpec | None = None,
                source: str | None = None, log: Callable[[str], None] = print) -> Iterator[Client]:
    """A Dask client: ``scheduler`` (a running cluster, left running), else the ``cluster`` section's
    dask-jobqueue cluster, else a ``LocalCluster`` of ``workers`` processes (default: the cores), one thread each.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        if workers is not None:
            raise FastmlError("--workers sizes the local cluster; with --scheduler the remote cluster's workers run "
                              "the scan (leave --workers out)")
        try:
            client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, TimeoutError, ValueError) as err:
            raise FastmlError(" ".join(f"--scheduler {scheduler}: cannot connect ({type(err).__name__}: {err}); "
                                       "expected the address of a running Dask scheduler, e.g. tcp://host:8786"
                                       .split())) from None
        try:
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_S)
            except TimeoutError:
                raise FastmlError(f"--scheduler {scheduler}: no worker connected within {WORKER_WAIT_S} s") from None
            yield client
        finally:
            client.close()
        return
    if workers is not None and workers < 1:
        raise FastmlError(f"--workers {workers}: expected a whole number >= 1")
    if cluster is not None:
        jq = jobqueue_cluster(cluster, source)
        try:
            jq.scale(jobs=workers or cluster.jobs)
            with Client(jq) as client:
                yield client
        finally:
            jq.close()
        return
    n = workers or os.cpu_count() or 1
    local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, env=dict(WORKER_ENV),
                         dashboard_address=":8787" if _bokeh_available() else None, silence_logs=40)
    try:
        with Client(local) as client:
            yield client
    finally:
        local.close()


def dashboard_line(client: Client) -> str:
    """The line printed at the start: where the Dask dashboard is, or why there is none."""
    info = client.scheduler_info()
    workers = len(info.get("workers", {}))
    if "dashboard" in info.get("services", {}):
        return f"dask: {workers} worker(s), dashboard {client.dashboard_link}"
    return f"dask: {workers} worker(s), dashboard not served (the scheduler needs bokeh>=3.1: fastml's cluster extra)"


# ---------------------------------------------------------------------------------------------- resume


def resumable(point: ScanPoint, phase: str, quick: bool) -> dict[str, Any] | None:
    """The point's row from an earlier run, if its project holds a report of this recipe (same config
    hash), the same ``--quick``, and at least ``phase`` (a firmware report also answers for the estimate)."""

    try:
        report = load_report(point.cfg.project_dir)
    except FastmlError:
        return None
    info = (report.model_extra or {}).get("scan") or {}
    if report.config_hash != point.cfg.config_hash() or info.get("quick") != quick or report.status != "ok":
        return None
    if phase == "firmware" and info.get("phase") != "firmware":
        return None
    return {"point": point.name, "phase": phase, "status": "ok", "reason": "", "config_hash": report.config_hash,
            **report_row(report), "wall_s": 0.0}


# ----------------------------------------------------------------------------------------------- phases


def front_x(row: dict[str, Any], front: str) -> float | None:
    """The resource figure of the front: da4ml-estimated LUTs (the rtl build's exact da4ml count if that is
    all a resumed rtl point has), or HGQ2 EBOPs."""
    if front == "ebops":
        return row.get("ebops")
    value = row.get("lut_da4ml_estimate")
    return value if value is not None else row.get("lut_da4ml")


def _run_phase(client: Client, points: list[ScanPoint], phase: str, ctx: dict[str, Any], resume: bool,
               progress: bool, log: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Run ``phase`` for ``points`` on the cluster; returns ``{point name: result row}``, each exactly once."""
    from distributed import as_completed

    results: dict[str, dict[str, Any]] = {}
    todo: list[ScanPoint] = []
    for p in points:
        row = resumable(p, phase, ctx["quick"]) if resume else None
        if row is not None:
            results[p.name] = {**row, "resumed": True}
        else:
            todo.append(p)
    what = {"estimate": "train + estimate", "firmware": "firmware"}[phase]
    log(f"[{what}] {len(todo)} point(s) to run" + (f", {len(points) - len(todo)} resumed" if resume else ""))
    if not todo:
        return results
    futures = {}
    for p in todo:
        task = {**ctx, "phase": phase, "point": p.name, "varied": p.varied, "overrides": p.overrides,
                "log_file": str(ctx["scan_dir"] / "logs" / f"{p.name}.log")}
        # pure=False + run id in the key: a rerun of the scan never reuses an old result from the scheduler
        futures[client.submit(run_point, task, key=f"fastml-scan-{ctx['run_id']}-{phase}-{p.name}",
                              pure=False)] = p.name
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc=what, unit="point", file=sys.stderr)
    failed = 0
    for done, future in enumerate(as_completed(futures), start=1):
        name = futures[future]
        try:
            row = future.result()
        except Exception as err:  # e.g. KilledWorker: the point's workers kept dying; the scan goes on
            row = {"point": name, "phase": phase, "status": "failed",
                   "reason": " ".join(f"{type(err).__name__}: {err}".split())[:400]}
        future.release()
        results[name] = {**row, "resumed": False}
        failed += row["status"] != "ok"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(done=done - failed, failed=failed)
        else:
            log(f"[{what} {done}/{len(todo)}] {name}: {row['status']}"
                + (f" ({row['reason']})" if row["reason"] else f" in {row.get('wall_s', 0):.1f} s")
                + f" — {done - failed} done, {failed} failed")
    if bar is not None:
        bar.close()
    return results


def _attempts(log_file: Path, run_id: str, phase: str) -> int:
    """How many times this run started ``phase`` of the point (a worker killed mid-point makes it 2)."""
    if not log_file.is_file():
        return 0
    tag = f"== attempt run={run_id} phase={phase} "
    return sum(1 for line in log_file.read_text().splitlines() if tag in line)


# ------------------------------------------------------------------------------------------------- scan


def check_spec(spec: ScanSpec, points: list[ScanPoint]) -> None:
    """Scan-level checks that need the expanded points (before anything runs)."""
    if spec.phase2.build != "all":
        kinds = {p.cfg.model.kind for p in points}
        if kinds - {"mlp"}:
            raise ConfigError(f"{spec.source_path}: key 'phase2.build': {spec.phase2.build!r} needs phase-1 "
                              f"estimates (HGQ2 models, model.kind mlp), got model.kind {sorted(kinds)}; "
                              "set phase2.build: all to build every point")


def run_scan(spec: ScanSpec, *, quick: bool = False, output_dir: str | Path | None = None,
             workers: int | None = None, scheduler: str | None = None, resume: bool = False,
             use_cluster_section: bool = True, client: Client | None = None, progress: bool = False,
             log: Callable[[str], None] = print) -> ScanResult:
    """Run a scan; see ``fastml.scan``. ``client``: use this Dask client (tests, notebooks) instead of opening one."""
    points = expand(spec, output_dir)  # every point validated before anything runs
    check_spec(spec, points)
    folder = scan_dir(spec, output_dir)
    run_id = uuid.uuid4().hex[:12]
    ctx = {"scan": spec.name, "run_id": run_id, "quick": quick, "scan_dir": folder,
           "base_raw": read_yaml(spec.base_path, "build recipe"), "base_path": str(spec.base_path),
           "synth": spec.phase2.synth}
    log(f"scan {spec.name}: {len(points)} point(s) into {folder} (phase 2: {spec.phase2.build}"
        + (f", front accuracy vs {spec.phase2.front}" if spec.phase2.build == "pareto" else "") + ")")

    @contextmanager
    def given() -> Iterator[Client]:
        yield client  # type: ignore[misc]

    opened = given() if client is not None else open_client(
        workers, scheduler, spec.cluster if use_cluster_section and not scheduler else None, spec.source_path, log)
    with opened as c:
        dashboard = dashboard_line(c)
        log(dashboard)
        (folder / "logs").mkdir(parents=True, exist_ok=True)  # only once a cluster answered
        estimates: dict[str, dict[str, Any]] = {}
        front: list[str] = []
        if spec.phase2.build != "all":
            estimates = _run_phase(c, points, "estimate", ctx, resume, progress, log)
            front = pareto_names(points, estimates, spec.phase2.front)
        chosen = {"all": [p.name for p in points], "pareto": front, "none": []}[spec.phase2.build]
        if spec.phase2.build == "pareto":
            log(f"Pareto front (accuracy vs {spec.phase2.front}): {', '.join(front) or 'no point'}")
        firmware = _run_phase(c, [p for p in points if p.name in chosen], "firmware", ctx, resume, progress, log) \
            if chosen else {}
    if spec.phase2.build == "all":  # no phase 1: the front of the built points, for the table and plot
        front = pareto_names(points, firmware, spec.phase2.front)
    table = results_table(spec, points, estimates, firmware, front, run_id, folder)
    paths = write_table(table, folder)
    plot = save_pareto_plot(table, spec, folder) if pareto_points(table, spec.phase2.front) else None
    counts = {"points": len(points), "ok": int((table["status"] == "ok").sum()),
              "failed": int((table["status"] == "failed").sum()),
              "firmware": sum(r["status"] == "ok" for r in firmware.values()), "front": len(front)}
    html = save_scan_html(table, spec, folder, counts)
    return ScanResult(table=table, scan_dir=folder, table_paths=paths, plot_path=plot, front=front,
                      dashboard=dashboard, counts=counts, html_path=html)


def pareto_names(points: list[ScanPoint], estimates: dict[str, dict[str, Any]], front: str) -> list[str]:
    """Names of the phase-1 points on the front: no other point has fewer LUTs (EBOPs) and higher accuracy."""

    candidates = []
    for p in points:
        row = estimates.get(p.name, {})
        x = front_x(row, front)
        if row.get("status") == "ok" and x is not None and row.get("accuracy_quantized") is not None:
            candidates.append({"name": p.name, "x": float(x), "accuracy": float(row["accuracy_quantized"])})
    return [candidates[i]["name"] for i in pareto_optimal(candidates, "x", "accuracy")]


def _cell(v: Any) -> Any:
    """Table cells are scalars: lists/dicts (e.g. ``model.hidden``) are stored as JSON text."""
    import json

    return json.dumps(v) if isinstance(v, (list, dict, tuple)) else v


def results_table(spec: ScanSpec, points: list[ScanPoint], estimates: dict[str, dict[str, Any]],
                  firmware: dict[str, dict[str, Any]], front: list[str], run_id: str, folder: Path) -> pd.DataFrame:
    """One row per point: varied values, status, figures of the furthest phase that ran, wall times."""
    import pandas as pd

    varied_keys = spec.scan.keys()
    rows = []
    for p in points:
        est, fw = estimates.get(p.name), firmware.get(p.name)
        ran = [r for r in (est, fw) if r is not None]
        failed = [r for r in ran if r["status"] != "ok"]
        ok = [r for r in ran if r["status"] == "ok"]
        figures = {k: v for r in ok for k, v in r.items()
                   if k not in ("point", "phase", "status", "reason", "wall_s", "resumed")}
        row: dict[str, Any] = {"point": p.name}
        row.update({k: _cell(p.varied.get(k)) for k in varied_keys})
        row.update({
            "status": "failed" if failed else "ok" if ok else "not run",
            "phase": ok[-1]["phase"] if ok else "none",
            "reason": "; ".join(f"{r['phase']}: {r['reason']}" for r in failed),
            "on_front": p.name in front,
            "resumed": bool(ran) and all(r.get("resumed") for r in ran),
            "attempts_estimate": _attempts(folder / "logs" / f"{p.name}.log", run_id, "estimate"),
            "attempts_firmware": _attempts(folder / "logs" / f"{p.name}.log", run_id, "firmware"),
            **figures,
            "wall_s_estimate": est.get("wall_s") if est else None,
            "wall_s_firmware": fw.get("wall_s") if fw else None,
            "project": str(p.cfg.project_dir),
        })
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, folder: Path) -> list[Path]:
    """``scan.parquet`` (pyarrow) and ``scan.csv``, each written to a temporary file and moved into place."""
    paths = []
    for name, write in (("scan.parquet", lambda t, p: t.to_parquet(p, engine="pyarrow", index=False)),
                        ("scan.csv", lambda t, p: t.to_csv(p, index=False))):
        final = folder / name
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        write(table, tmp)
        os.replace(tmp, final)
        paths.append(final)
    return paths


def pareto_points(table: pd.DataFrame, front: str = "lut") -> list[dict[str, Any]]:
    """The table's points as ``fastml.plots.pareto_front`` takes them (points without figures left out)."""
    out = []
    for row in table.to_dict("records"):
        x = front_x(row, front)
        acc = row.get("accuracy_quantized")
        if row["status"] == "ok" and x is not None and acc is not None and x == x and acc == acc:  # x == x: not NaN
            out.append({"x": float(x), "accuracy": float(acc), "label": str(row["point"]).rsplit("-", 1)[-1],
                        "latency_ns": row.get("latency_ns"), "point": row["point"]})
    return out


def save_pareto_plot(table: pd.DataFrame, spec: ScanSpec, folder: Path) -> Path:
    """``pareto.png``: quantized accuracy vs the front's resource figure, front drawn, labels = point numbers."""

    front = spec.phase2.front
    pts = pareto_points(table, front)
    if pts and any(p["latency_ns"] is None or p["latency_ns"] != p["latency_ns"] for p in pts):
        for p in pts:
            p.pop("latency_ns")
    x_label = "estimated LUTs (da4ml cost model)" if front == "lut" else "EBOPs (HGQ2)"
    fig = pareto_front(pts, x_key="x", x_label=x_label, y_label="accuracy, quantized model (%)",
                       title=f"scan {spec.name}: accuracy vs {front} ({len(pts)} points)",
                       colour_key="latency_ns" if pts and "latency_ns" in pts[0] else None)
    return save_figure(fig, folder / "pareto.png")


def save_scan_html(table: pd.DataFrame, spec: ScanSpec, folder: Path, counts: dict[str, int] | None = None) -> Path:
    """``scan.html`` beside ``scan.parquet``: each point with a built project links to its ``report.html``."""
    records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}  # NaN -> not run
               for r in table.to_dict("records")]
    for r in records:
        page = Path(str(r.get("project", ""))) / HTML_FILE
        r["href"] = Path(os.path.relpath(page, folder)).as_posix() if r.get("project") and page.is_file() else None
    hrefs = {r["point"]: r["href"] for r in records}
    points = [{**p, "href": hrefs.get(p["point"])} for p in pareto_points(table, spec.phase2.front)]
    return write_scan_html(folder, spec.name, records, points, spec.phase2.front, counts)


def summary_lines(result: ScanResult) -> list[str]:
    """A few lines a person reads after ``fastml scan``."""
    t, c = result.table, result.counts
    lines = [f"scan: {c['points']} point(s): {c['ok']} ok, {c['failed']} failed; firmware built for "
             f"{c['firmware']}; Pareto front: {', '.join(result.front) or 'not computed'}"]
    for row in t[t["status"] == "failed"].to_dict("records"):
        lines.append(f"  failed {row['point']}: {row['reason']}")
    lines += [f"table: {p}" for p in result.table_paths]
    if result.plot_path is not None:
        lines.append(f"plot: {result.plot_path}")
    if result.html_path is not None:
        lines.append(f"page: {result.html_path}")
    return lines
