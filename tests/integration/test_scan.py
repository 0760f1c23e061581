"""``fastml scan``: scan recipes, a real Dask LocalCluster (killed worker, failed point, --resume), and a
scheduler started separately on 127.0.0.1 used through ``--scheduler`` as a remote cluster would be.

Points are tiny (hidden [4]-[8], 1 epoch, toy data, rtl backend without the verilator run) so that each
takes seconds; the cluster tests still cost a minute or two of CPU, most of it JAX compiling.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from fastml.errors import ConfigError, FastmlError

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture()
def tiny_recipe(tmp_path: Path, toy_npz: Path) -> Path:
    """A build recipe whose points train and estimate in seconds."""
    return _write(tmp_path / "tiny.yaml", {
        "name": "tiny",
        "data": {"source": str(toy_npz), "max_samples": 2000},
        "model": {"kind": "mlp", "hidden": [4]},
        "train": {"epochs": 1, "batch_size": 256, "float_baseline": False},
        "firmware": {"backend": "rtl"},
        "verify": {"samples": 200, "rtl_sim": False},
    })


def _scan(tmp_path: Path, scan: dict, **extra) -> Path:
    return _write(tmp_path / "scan.yaml", {"name": "tscan", "base": "tiny.yaml", "scan": scan, **extra})


# --------------------------------------------------------------------------------------- recipes (no cluster)


def test_points_are_grid_times_explicit_times_random_draws(tmp_path: Path, tiny_recipe: Path) -> None:
    from fastml.scan import expand, load_scan

    path = _scan(tmp_path, {
        "grid": {"model.hidden": [[4], [8]], "train.learning_rate": [0.001, 0.01]},
        "points": [{"train.batch_size": 128}, {"train.batch_size": 512}],
        "random": {"samples": 3, "seed": 7, "params": {"train.beta.end": {"log_uniform": [1e-6, 1e-3]},
                                                       "train.seed": {"int_uniform": [0, 5]}}},
    }, fixed={"verify.samples": 300})
    spec = load_scan(path)
    points = expand(spec, tmp_path / "out")
    assert len(points) == 2 * 2 * 2 * 3
    assert len({p.name for p in points}) == len(points)
    combos = {(json.dumps(p.varied["model.hidden"]), p.varied["train.learning_rate"], p.varied["train.batch_size"])
              for p in points}
    assert len(combos) == 8  # every grid combination with every explicit point
    betas = [p.varied["train.beta.end"] for p in points]
    assert all(1e-6 <= b <= 1e-3 for b in betas) and len(set(betas)) == len(betas)
    # log-uniform: draws spread over the decades, not bunched at the top as a linear draw would be
    assert min(betas) < 1e-4
    assert all(0 <= p.varied["train.seed"] <= 5 for p in points)
    for p in points:  # every point is a full, validated recipe with its own project folder
        assert list(p.cfg.model.hidden) == p.varied["model.hidden"]
        assert p.cfg.train.beta.end == p.varied["train.beta.end"]
        assert p.cfg.verify.samples == 300
        assert p.cfg.project_dir == (tmp_path / "out" / "tscan" / p.name).resolve()
    again = expand(load_scan(path), tmp_path / "out")  # the seed makes the draws reproducible
    assert [p.varied for p in again] == [p.varied for p in points]
    assert len({p.cfg.config_hash() for p in points}) == len(points)


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*_scan.yaml")), ids=lambda p: p.name)
def test_shipped_scans_expand_into_valid_recipes(path: Path, tmp_path: Path) -> None:
    from fastml.scan import expand, load_scan

    points = expand(load_scan(path), tmp_path)
    assert len(points) >= 4 and len({p.cfg.config_hash() for p in points}) == len(points)


@pytest.mark.parametrize(("scan", "fixed", "expected"), [
    ({"grid": {"train.epochs": [1, -1]}}, {}, r"point tscan-001 \(train\.epochs=-1\).*train\.epochs"),
    ({"grid": {"model.hiddn": [[4]]}}, {}, r"point tscan-000 .*unknown key 'model\.hiddn'"),
    ({"grid": {"train.epochs": [1]}, "random": {"samples": 2, "params": {"train.epochs": {"choice": [1]}}}}, {},
     r"varied both in grid and in random"),
    ({"grid": {"name": ["a", "b"]}}, {}, r"set by the scan itself"),
    ({"random": {"samples": 2, "params": {"train.beta.end": {"log_uniform": [0, 1]}}}}, {}, r"bounds must be > 0"),
    ({"grid": {"train.epochs": []}}, {}, r"has no values"),
    ({"grid": {"train.epochs": [1]}}, {"name": "../up"}, r"key 'name': expected 1-56 letters"),
    ({"grid": {"train.epochs": [1]}}, {"fixed": {"firmware.output_dir": "x"}}, r"set by the scan itself"),
])
def test_bad_scan_fails_on_one_line_before_anything_runs(tmp_path: Path, tiny_recipe: Path, scan: dict,
                                                         fixed: dict, expected: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from fastml.cli import main

    path = _scan(tmp_path, scan, **fixed)
    rc = main(["scan", str(path), "--output-dir", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(expected, err), err
    assert str(path) in err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_missing_base_recipe_and_bdt_pareto_are_one_line_errors(tmp_path: Path, tiny_recipe: Path) -> None:
    from fastml.scan import expand, load_scan
    from fastml.scan.engine import check_spec

    with pytest.raises(ConfigError, match=r"key 'base': build recipe .*nope\.yaml does not exist"):
        load_scan(_write(tmp_path / "s1.yaml", {"name": "s", "base": "nope.yaml", "scan": {}}))
    _write(tmp_path / "bdt.yaml", {"name": "b", "data": {"source": yaml.safe_load(tiny_recipe.read_text())["data"]
                                                         ["source"]},
                                   "model": {"kind": "bdt"}, "firmware": {"backend": "conifer"}})
    spec = load_scan(_write(tmp_path / "s2.yaml", {"name": "s", "base": "bdt.yaml",
                                                   "scan": {"grid": {"model.max_depth": [2, 3]}}}))
    with pytest.raises(ConfigError, match=r"phase2\.build.*needs phase-1 estimates.*phase2\.build: all"):
        check_spec(spec, expand(spec, tmp_path / "out"))


def test_dry_run_lists_points(tmp_path: Path, tiny_recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fastml.cli import main

    path = _scan(tmp_path, {"grid": {"model.hidden": [[4], [8]]}})
    assert main(["scan", str(path), "--dry-run", "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "tscan-000: model.hidden=[4]" in out and "tscan-001: model.hidden=[8]" in out and "2 point(s)" in out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["slurm", "htcondor"])
def test_jobqueue_cluster_built_from_the_scan_section(tmp_path: Path, tiny_recipe: Path, kind: str) -> None:
    """The cluster extra: a dask-jobqueue cluster object from ``cluster:`` (not scaled: no batch system here)."""
    pytest.importorskip("dask_jobqueue")
    from fastml.scan import jobqueue_cluster, load_scan

    spec = load_scan(_scan(tmp_path, {"grid": {"train.epochs": [1]}},
                           cluster={"kind": kind, "jobs": 3, "cores": 2, "memory": "6GB",
                                    **({"walltime": "01:00:00"} if kind == "slurm" else {})}))
    cluster = jobqueue_cluster(spec.cluster, spec.source_path)
    try:
        script = cluster.job_script()
        assert "export KERAS_BACKEND=jax" in script
        assert "--nthreads 1" in script and "--nworkers 2" in script  # one thread per worker process
        assert "--memory-limit 2.79GiB" in script  # 6 GB shared by the job's 2 worker processes
        if kind == "slurm":
            assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH -t 01:00:00" in script
        else:
            assert "RequestCpus = MY.DaskWorkerCores" in script and "MY.DaskWorkerCores = 2" in script
    finally:
        cluster.close()
    bad = load_scan(_scan(tmp_path, {"grid": {"train.epochs": [1]}}, cluster={"kind": kind, "no_such_option": 1}))
    with pytest.raises(ConfigError, match=r"key 'cluster'.*rejected the options"):
        jobqueue_cluster(bad.cluster, bad.source_path)


# -------------------------------------------------------------------------------------- a real LocalCluster


def _kill_first_point_mid_training(logs: Path, stop: threading.Event, killed: dict) -> None:
    """Watch the points' logs; SIGKILL the worker process of the first point seen training."""
    while not stop.is_set():
        for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
            lines = log.read_text().splitlines()
            starts = [i for i, line in enumerate(lines) if "== attempt" in line and "phase=estimate" in line]
            if starts and any("[train] ..." in line for line in lines[starts[-1]:]):
                pid = int(re.search(r"pid=(\d+)", lines[starts[-1]]).group(1))
                time.sleep(0.5)  # inside training (which takes seconds); which point died is read back below
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
        time.sleep(0.1)


@pytest.mark.slow
def test_local_cluster_scan_survives_a_killed_worker_records_failures_and_resumes(
        tmp_path: Path, tiny_recipe: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd
    from distributed import Client, LocalCluster

    from fastml.cli import main
    from fastml.report import load_report
    from fastml.scan import WORKER_ENV, load_scan, run_scan

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not an npz archive")  # passes validation (the file exists), fails when read
    scan = _scan(tmp_path, {"points": [
        {"model.hidden": [4]},
        {"model.hidden": [8], "train.beta.end": 1e-3},
        {"model.hidden": [6]},
        {"data.source": str(corrupt)},  # this point's build fails: recorded, and the scan goes on
    ]}, phase2={"build": "none"})
    spec = load_scan(scan)
    out = tmp_path / "out"
    logs = out / "tscan" / "logs"
    killed: dict = {}
    stop = threading.Event()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, env=dict(WORKER_ENV),
                      dashboard_address=None, silence_logs=50) as cluster, Client(cluster) as client:
        killer = threading.Thread(target=_kill_first_point_mid_training, args=(logs, stop, killed), daemon=True)
        killer.start()
        try:
            result = run_scan(spec, quick=True, output_dir=out, client=client, log=lambda m: None)
        finally:
            stop.set()
    assert killed, "no worker was killed: the test did not exercise the fault"
    # the point the killed process was running: its attempt by that pid never reached an end line
    interrupted = []
    for log in logs.glob("*.log"):
        lines = log.read_text().splitlines()
        for i, line in enumerate(lines):
            if f"pid={killed['pid']}" in line and "== attempt" in line:
                rest = lines[i + 1:]
                nxt = next((j for j, r in enumerate(rest) if "== attempt" in r), len(rest))
                if not any(r.split(" ", 1)[1].startswith("== estimate") for r in rest[:nxt]):
                    interrupted.append(log.stem)
    assert len(interrupted) == 1, interrupted
    killed["point"] = interrupted[0]
    table = result.table.set_index("point")
    assert list(table.index) == ["tscan-000", "tscan-001", "tscan-002", "tscan-003"]  # each point once
    # the killed point was rerun (started twice, on another process), every other point ran exactly once
    attempts = table["attempts_estimate"].to_dict()
    assert attempts.pop(killed["point"]) == 2
    assert set(attempts.values()) == {1}
    relog = (logs / f"{killed['point']}.log").read_text()
    assert len(set(re.findall(r"phase=estimate host=\S+ pid=(\d+)", relog))) == 2
    assert not list((out / "tscan").glob(".*.tmp-*"))  # the killed attempt's staging folder was cleaned up
    # the failed point: recorded with its one-line reason; the others are fine and each has its project
    assert table.loc["tscan-003", "status"] == "failed"
    assert "corrupt.npz: cannot read" in table.loc["tscan-003", "reason"]
    assert "\n" not in table.loc["tscan-003", "reason"]
    ok = table[table["status"] == "ok"]
    assert list(ok.index) == ["tscan-000", "tscan-001", "tscan-002"] and (ok["phase"] == "estimate").all()
    assert ok["accuracy_quantized"].between(0, 1).all() and (ok["lut_da4ml_estimate"] > 0).all()
    assert ok.loc["tscan-001", "lut_da4ml_estimate"] > ok.loc["tscan-000", "lut_da4ml_estimate"]  # 8 vs 4 wide
    assert table.loc["tscan-001", "train.beta.end"] == 1e-3 and table.loc["tscan-001", "model.hidden"] == "[8]"
    for name in ok.index:
        report = load_report(ok.loc[name, "project"])
        assert report.scan["phase"] == "estimate" and report.config_hash == ok.loc[name, "config_hash"]
    # an estimate-only project cannot pass a bit-exactness gate: fastml check says not run
    assert main(["check", str(ok.loc["tscan-000", "project"])]) == 1
    assert "not run" in capsys.readouterr().out
    # results on disk: parquet + CSV, and the Pareto plot
    disk = pd.read_parquet(out / "tscan" / "scan.parquet")
    assert disk["point"].tolist() == list(table.index) and "model.hidden" in disk.columns
    assert pd.read_csv(out / "tscan" / "scan.csv")["status"].tolist() == disk["status"].tolist()
    assert (out / "tscan" / "pareto.png").stat().st_size > 10_000
    page = (out / "tscan" / "scan.html").read_text()  # the scan's page: a row per point, fronts drawn
    assert result.html_path == out / "tscan" / "scan.html" and all(f">{p}<" in page for p in table.index)
    built = [p for p in table.index if (Path(table.loc[p, "project"]) / "report.html").is_file()]
    assert all(f"{p}/report.html" in page for p in built)  # a point with a page links to it
    assert set(result.front) <= set(ok.index) and ok["lut_da4ml_estimate"].idxmin() in result.front

    # --resume through the CLI (its own LocalCluster, 1 worker): ok points skipped, only the failed one reruns
    rc = main(["scan", str(scan), "--quick", "--resume", "--workers", "1", "--output-dir", str(out),
               "--no-progress"])
    printed = capsys.readouterr()
    assert rc == 1  # the corrupt-data point fails again
    assert re.search(r"dask: 1 worker\(s\), dashboard", printed.err)
    again = pd.read_parquet(out / "tscan" / "scan.parquet").set_index("point")
    assert again.loc[ok.index, "resumed"].all() and (again.loc[ok.index, "attempts_estimate"] == 0).all()
    assert again.loc["tscan-003", "attempts_estimate"] == 1 and not again.loc["tscan-003", "resumed"]
    pd.testing.assert_series_equal(again.loc[ok.index, "accuracy_quantized"], ok["accuracy_quantized"])
    assert "1 failed" in printed.out and "failed tscan-003" in printed.out


def test_front_selection_and_table_from_point_results(tmp_path: Path, tiny_recipe: Path) -> None:
    """Which points phase 2 builds, and how the two phases' results become one row (no cluster)."""
    from fastml.scan import expand, load_scan
    from fastml.scan.engine import pareto_names, results_table

    spec = load_scan(_scan(tmp_path, {"grid": {"model.hidden": [[4], [5], [6], [7], [8]]}}))
    points = expand(spec, tmp_path / "out")
    est = {  # (LUT, accuracy): 001 is beaten by 000 (fewer LUTs, more accurate); 004 failed
        "tscan-000": (100, 0.60), "tscan-001": (150, 0.55), "tscan-002": (200, 0.70), "tscan-003": (300, 0.72),
    }
    estimates = {name: {"point": name, "phase": "estimate", "status": "ok", "reason": "", "wall_s": 1.0,
                        "lut_da4ml_estimate": lut, "accuracy_quantized": acc, "ebops": lut * 10}
                 for name, (lut, acc) in est.items()}
    estimates["tscan-004"] = {"point": "tscan-004", "phase": "estimate", "status": "failed", "reason": "boom"}
    front = pareto_names(points, estimates, "lut")
    assert front == ["tscan-000", "tscan-002", "tscan-003"]
    assert pareto_names(points, estimates, "ebops") == front
    firmware = {"tscan-000": {"point": "tscan-000", "phase": "firmware", "status": "ok", "reason": "",
                              "wall_s": 5.0, "mismatches": 0, "accuracy_firmware": 0.60},
                "tscan-002": {"point": "tscan-002", "phase": "firmware", "status": "failed",
                              "reason": "VerificationError: 3 mismatches", "wall_s": 4.0}}
    table = results_table(spec, points, estimates, firmware, front, "run", tmp_path).set_index("point")
    assert table.loc["tscan-000", "phase"] == "firmware" and table.loc["tscan-000", "mismatches"] == 0
    assert table.loc["tscan-000", "lut_da4ml_estimate"] == 100  # phase-1 figures kept beside phase-2 ones
    assert table.loc["tscan-002", "status"] == "failed" and table.loc["tscan-002", "phase"] == "estimate"
    assert table.loc["tscan-002", "reason"] == "firmware: VerificationError: 3 mismatches"
    assert table.loc["tscan-004", "reason"] == "estimate: boom"
    assert table["on_front"].tolist() == [True, False, True, True, False]
    assert table.loc["tscan-001", "wall_s_firmware"] is None or table["wall_s_firmware"].isna()["tscan-001"]


# ----------------------------------------------------------------- a scheduler started separately (remote use)


@pytest.mark.slow
def test_scan_through_a_separately_started_scheduler(tmp_path: Path, tiny_recipe: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from fastml.cli import main

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard"],
                                      env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # phase2 all: every point (here one) built into verified firmware on the remote worker
        scan = _scan(tmp_path, {"grid": {"model.hidden": [[4]]}}, phase2={"build": "all"})
        out = tmp_path / "remote_out"
        args = ["scan", str(scan), "--scheduler", address, "--output-dir", str(out), "--no-progress"]
        rc = main(args)
        printed = capsys.readouterr()
        assert rc == 0, printed.err
        assert "dask: 1 worker(s)" in printed.err and "[firmware 1/1] tscan-000: ok" in printed.err
        import pandas as pd

        table = pd.read_parquet(out / "tscan" / "scan.parquet")
        assert table["status"].tolist() == ["ok"] and table["phase"].tolist() == ["firmware"]
        assert table["mismatches"].tolist() == [0] and table["verified_events"].tolist() == [200]
        assert table["attempts_firmware"].tolist() == [1] and (table["lut_da4ml_estimate"] > 0).all()
        project = Path(table["project"][0])
        assert json.loads((project / "report.json").read_text())["scan"]["phase"] == "firmware"
        assert (project / "firmware").is_dir() and (project / "model" / "verify_inputs.npz").is_file()
        assert main(["check", str(project)]) == 0  # a point's project is an ordinary, gateable build
        capsys.readouterr()
        # resumed through the same remote cluster: nothing rebuilt
        assert main([*args, "--resume"]) == 0
        again = pd.read_parquet(out / "tscan" / "scan.parquet")
        assert again["resumed"].tolist() == [True] and again["attempts_firmware"].tolist() == [0]
        # the scheduler is left running for its owner: a second client still reaches it
        from distributed import Client

        with Client(address, timeout="10s") as c:
            assert len(c.scheduler_info()["workers"]) == 1
        with pytest.raises(FastmlError, match=r"--workers sizes the local cluster"):
            from fastml.scan import open_client

            with open_client(workers=2, scheduler=address):
                pass
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_unreachable_scheduler_is_one_line(tmp_path: Path, tiny_recipe: Path,
                                           capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from fastml.cli import main
    from fastml.scan import engine

    monkeypatch.setattr(engine, "CONNECT_TIMEOUT_S", 2)
    scan = _scan(tmp_path, {"grid": {"model.hidden": [[4]]}})
    rc = main(["scan", str(scan), "--scheduler", "tcp://127.0.0.1:9", "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("fastml: error:")]
    assert rc == 2 and len(errors) == 1 and "Traceback" not in err
    assert "--scheduler tcp://127.0.0.1:9: cannot connect" in errors[0]
