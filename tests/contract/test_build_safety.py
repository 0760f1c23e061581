"""Interrupted and concurrent builds, and resource limits, with real processes.

- The project lock: a second holder fails naming the first's PID; a lock left by a SIGKILLed process is
  not mistaken for a live one; leftovers of killed builds are removed (or the project restored).
- ``fastml build`` killed with SIGKILL mid-convert leaves a staging folder that the next build removes,
  and a build of the same project started while one runs fails at once naming the running one's PID.
- The tool watchdog kills a hanging tool; the model-size guard stops an absurd model before conversion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fastml._internal.guards import ResourceLimitError, check_model_size, tool_watchdog
from fastml._internal.project_lock import BuildLockedError, lock_path, project_lock, recover_interrupted
from fastml.errors import ToolError

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1"}


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"process exited ({proc.returncode}) before {what}:\n{out[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def _hold_lock(project: Path) -> subprocess.Popen:
    """A real process that takes the project's lock and sleeps."""
    code = textwrap.dedent(f"""
        import time
        from fastml._internal.project_lock import project_lock
        with project_lock({str(project)!r}, log=lambda m: None):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_names_the_holder_and_outlives_no_dead_process(tmp_path):
    project = tmp_path / "out" / "proj"
    holder = _hold_lock(project)
    try:
        with pytest.raises(BuildLockedError) as info, project_lock(project):
            pass
        assert f"PID {holder.pid}" in str(info.value) and "\n" not in str(info.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(project).is_file()  # SIGKILL: the file stays, but the kernel dropped the flock
    notes: list[str] = []
    with project_lock(project, log=notes.append):
        assert lock_path(project).read_text().count(f'"pid": {os.getpid()}') == 1
    assert any(f"PID {holder.pid}" in n and "did not finish" in n for n in notes), notes
    assert not lock_path(project).exists()  # a build that ends normally leaves no lock file


def test_leftovers_of_killed_builds_are_removed_and_a_half_swap_restored(tmp_path):
    out = tmp_path / "out"
    project = out / "proj"
    for name in (".proj.tmp-abcd1234", ".proj.tmp-zz_9yy8x", ".proj.old-4242"):
        (out / name).mkdir(parents=True)
    (out / ".proj.old-4242" / "report.json").write_text("{}")
    keep = [out / ".proj.x.tmp-abcd1234", out / ".other.tmp-abcd1234", out / "proj.failed"]
    for p in keep:
        p.mkdir()
    # the project folder is missing: the kill came between the two renames of the swap -> restore it
    removed = recover_interrupted(project, log=lambda m: None)
    assert (project / "report.json").is_file()
    assert sorted(p.name for p in removed) == [".proj.tmp-abcd1234", ".proj.tmp-zz_9yy8x"]
    assert all(p.is_dir() for p in keep)  # other projects' folders and the kept failed build are left alone


def test_watchdog_kills_a_hanging_tool():
    start = time.monotonic()
    with pytest.raises(ToolError) as info, tool_watchdog(1.0, "the firmware tools"):
        subprocess.run(["sleep", "60"], check=True)
    assert time.monotonic() - start < 15
    msg = str(info.value)
    assert "firmware.tool_timeout_s = 1 s" in msg and "sleep" in msg and "\n" not in msg


def test_watchdog_leaves_a_tool_that_finishes_in_time_alone():
    with tool_watchdog(30.0):
        done = subprocess.run(["sleep", "0.2"], check=True)
    assert done.returncode == 0


def test_model_size_guard_counts_any_keras_model():
    import keras

    inputs = keras.Input((1000,))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(2000)(inputs)))
    n = 1000 * 2000 + 2000 + 2000 * 3 + 3
    with pytest.raises(ResourceLimitError, match=f"{n:,} weights, more than firmware.max_weights = 200,000"):
        check_model_size(model, 200_000)
    assert check_model_size(model, 200_000, force=True) == n
    assert check_model_size(model, n) == n
    assert check_model_size(object(), 1) is None  # not a Keras model (e.g. trees): not counted


# ------------------------------------------------------------------------------ real fastml builds


def _recipe(tmp_path: Path, toy_npz: Path, **firmware) -> Path:
    fw = "".join(f"\n  {k}: {v}" for k, v in firmware.items())
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: tiny
        data: {{source: {toy_npz}, max_samples: 1500}}
        model: {{kind: mlp, mlp: {{hidden: [4], batchnorm: false}}}}
        train: {{epochs: 1, batch_size: 256, float_baseline: false}}
        verify: {{samples: 100}}
        firmware:
          output_dir: {tmp_path / "out"}""") + fw + "\n")
    return path


def _fastml(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fastml", *args, "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env or ENV, start_new_session=True)


def _fake_tool_dir(tmp_path: Path, name: str) -> Path:
    """A ``name`` on PATH that hangs, so a build is reliably caught inside its compile step."""
    bindir = tmp_path / "hang-bin"
    bindir.mkdir(exist_ok=True)
    (bindir / name).write_text("#!/bin/sh\nsleep 300\n")
    (bindir / name).chmod(0o755)
    return bindir


@pytest.mark.slow
def test_killed_and_concurrent_builds(tmp_path, toy_npz):
    """SIGKILL mid-convert leaves a staging folder; a concurrent build fails naming the PID; the next
    build removes the leftovers and produces a good project; a hanging compiler is killed at the timeout."""
    recipe = _recipe(tmp_path, toy_npz, tool_timeout_s=600)
    out = tmp_path / "out"
    hang_env = {**ENV, "PATH": f"{_fake_tool_dir(tmp_path, 'g++')}{os.pathsep}{ENV['PATH']}"}
    first = _fastml("build", str(recipe), env=hang_env)
    try:
        _wait_for(lambda: any(out.glob(".tiny.tmp-*")), 240, "the staging folder of the first build", first)
        second = _fastml("build", str(recipe))
        text, _ = second.communicate(timeout=240)
        assert second.returncode == 2, text
        err = [line for line in text.splitlines() if line.startswith("fastml: error:")]
        assert len(err) == 1 and f"PID {first.pid}" in err[0] and "another build of 'tiny'" in err[0], text
        assert "Traceback" not in text
        os.killpg(first.pid, signal.SIGKILL)  # the build and the hanging compiler it started
        first.wait(30)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    stale = list(out.glob(".tiny.tmp-*"))
    assert stale and not (out / "tiny").exists()

    third = _fastml("build", str(recipe))
    text, _ = third.communicate(timeout=400)
    assert third.returncode == 0, text
    assert not any(p.exists() for p in stale) and not list(out.glob(".tiny.*")), sorted(os.listdir(out))
    assert "left by an interrupted build" in text
    good = (out / "tiny" / "report.json").read_text()

    # a compiler that hangs is killed at firmware.tool_timeout_s; the good project stays as it was
    timed = _recipe(tmp_path, toy_npz, tool_timeout_s=3)
    fourth = _fastml("build", str(timed), env=hang_env)
    text, _ = fourth.communicate(timeout=400)
    assert fourth.returncode == 2, text
    err = [line for line in text.splitlines() if line.startswith("fastml: error:")]
    assert len(err) == 1 and "tool_timeout_s = 3 s" in err[0] and "g++" in err[0], text
    assert (out / "tiny" / "report.json").read_text() == good
    assert (out / "tiny.failed").is_dir() and not list(out.glob(".tiny.*"))
