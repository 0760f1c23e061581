"""Shared fixtures: expensive artefacts (trained models, compiled firmware) are built once per session.

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup --no-loadscope-reorder``).
The quick builds of the shipped recipes (``quick_jet_build``, ``quick_recipe_build``) are made once per run in a
folder all workers share, by whichever worker asks first (the others wait for it), so their tests go to any
worker. Any other session or module fixture is made once per worker that needs it, so the tests sharing one are
sent to the same worker (an ``xdist_group`` per such artefact, added below). The slow work is handed out first:
the groups with a slow test, then the other slow tests, then the fast ones, each in collection order.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

os.environ.setdefault("KERAS_BACKEND", "jax")
# JAX's compilation cache (fastml/_internal/keras_backend.py) in a folder of this run, made by the controlling
# process before the xdist workers start, so that every worker and child process (CLI builds, notebook kernels)
# shares it and a run starts cold, like CI, whatever the user's own cache holds. A user's FASTML_XLA_CACHE wins.
_RUN_XLA_CACHE = None
if "PYTEST_XDIST_WORKER" not in os.environ and not os.environ.get("FASTML_XLA_CACHE"):
    _RUN_XLA_CACHE = os.environ["FASTML_XLA_CACHE"] = tempfile.mkdtemp(prefix="fastml-tests-xla-")
ensure_backend()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def toy_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small, learnable 5-class problem on 16 features, saved as user data (.npz)."""
    rng = np.random.default_rng(1)
    n = 6000
    x = rng.normal(size=(n, 16)).astype(np.float32)
    y = (x[:, :5] + 0.5 * rng.normal(size=(n, 5))).argmax(1)
    path = tmp_path_factory.mktemp("toy") / "toy.npz"
    np.savez(path, x=x, y=y)
    return path


def _run_shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run shares (the run's base temp folder; the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # a worker's folder is <run>/popen-gwN
    shared = root / "shared_builds"
    shared.mkdir(exist_ok=True)
    return shared


def _built_once(shared: Path, key: str, build: Callable[[Path], None]) -> Path:
    """``build(out)`` run once per test run for ``key``, by whichever worker asks first; returns ``out``.

    The other workers wait on the same lock, then reuse the folder: a shipped recipe is built once per run however
    its tests are spread over the workers. A build that raised leaves no ``.done`` mark, so the next caller builds
    again (and fails the same way, in its own test).
    """
    name = hashlib.sha256(key.encode()).hexdigest()[:16]
    out, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also when the worker dies
        if not done.is_file():
            shutil.rmtree(out, ignore_errors=True)  # what a failed build left
            out.mkdir()
            build(out)
            done.write_text(key)
    return out


@pytest.fixture(scope="session")
def quick_jet_build(tmp_path_factory: pytest.TempPathFactory):
    """``fastml build configs/jet_tagger.yaml --quick``, once per test run, through the CLI, into a temp folder.

    Returns (project_dir, report). Other tests (gates, plots, notebooks, diagnose) reuse this project read-only.
    """
    from fastml.cli import main
    from fastml.report import load_report

    def build(out: Path) -> None:
        rc = main(["build", str(REPO / "configs" / "jet_tagger.yaml"), "--quick", "--output-dir", str(out),
                   "--no-progress"])
        assert rc == 0

    project = _built_once(_run_shared_dir(tmp_path_factory), "quick_jet_build", build) / "jet_tagger"
    return project, load_report(project)


@pytest.fixture(scope="session")
def quick_recipe_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``fastml.pipeline.build(configs/<recipe>, quick=True)``, once per recipe and overrides in the test run.

    Call it with the recipe's file name and nested overrides (e.g. ``train={"seed": 1}``); returns the project
    folder (read-only: copy it to change anything). The synthesis estimate (yosys: minutes, benchmarked elsewhere)
    is off; everything else is the recipe's own firmware, verified bit-exact at its levels (C simulation,
    emulator, verilator). Shared by the kinds, anomaly, diagnose, report-page and testbench tests on every worker.
    """
    from fastml.pipeline import build
    from fastml.recipe import load_config

    shared = _run_shared_dir(tmp_path_factory)

    def config(recipe: str, out: Path, overrides: dict[str, Any]):
        firmware = {"output_dir": str(out), "yosys": False, **overrides.get("firmware", {})}
        return load_config(REPO / "configs" / recipe, overrides={**overrides, "firmware": firmware})

    known: dict[str, Path] = {}  # this worker's answers: no lock or recipe reading on the next call

    def get(recipe: str, **overrides: Any) -> Path:
        key = json.dumps(["quick_recipe_build", recipe, overrides], sort_keys=True)
        if key not in known:
            out = _built_once(shared, key, lambda out: build(config(recipe, out, overrides), quick=True,
                                                             progress=False, log=lambda _: None))
            known[key] = config(recipe, out, overrides).project_dir
        return known[key]

    return get


@pytest.fixture(scope="session")
def tiny_rtl_trained():
    """The tiny 16 -> 8 -> 5 HGQ2 MLP of tests/tiny_rtl.py, trained once per session, and its test events.

    Shared by the RTL backend (tests/integration/test_rtl.py), the compiled emulator
    (tests/unit/backends/test_rtl_emulator.py) and the estimates (tests/integration/test_estimate.py); each of them
    trained the same seeded model before. Read-only: a test that needs a changed model makes its own.
    """
    from tiny_rtl import tiny_trained_model

    return tiny_trained_model()


# ---------------------------------------------------------------------------------------------- pytest-xdist
#: Session/module fixtures cheap enough to make on every worker that needs one (seconds): they do not pin tests
#: to one worker.
CHEAP_SHARED_FIXTURES = frozenset({"repo_root", "toy_npz", "tiny_rtl_trained", "figures_dir",
                                   # views of the run-shared builds below (a copy, a lookup)
                                   "diagnosable", "quick_jet_at_seed", "quick_ae_build", "quick_conv_build"})
#: Session fixtures whose artefact is made once per run and shared by every worker (``_built_once``): they do not
#: pin tests to one worker either.
RUN_SHARED_FIXTURES = frozenset({"quick_jet_build", "quick_recipe_build"})


def _xdist_group(item: pytest.Item) -> str | None:
    """One group per expensive shared artefact: a session fixture's name, or the test module for module fixtures."""
    defs = item._fixtureinfo.name2fixturedefs
    keys = set()
    for name in item.fixturenames:
        if name in CHEAP_SHARED_FIXTURES | RUN_SHARED_FIXTURES or name not in defs or name.startswith("_"):
            continue
        fixturedef = defs[name][-1]
        if fixturedef.baseid == "" and fixturedef.scope == "session":  # pytest's and plugins' own fixtures
            continue
        if fixturedef.scope == "session":
            keys.add(name)
        elif fixturedef.scope in ("module", "package"):
            keys.add(item.module.__name__)
    return "+".join(sorted(keys)) or None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: nothing to schedule
        return
    groups = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")  # a group a test sets itself
        group = mark.args[0] if mark is not None else _xdist_group(item)
        if group is not None:
            if mark is None:
                item.add_marker(pytest.mark.xdist_group(group))
            groups[item.nodeid] = group
    slow_groups = {g for item in items if item.get_closest_marker("slow") and (g := groups.get(item.nodeid))}

    def rank(item: pytest.Item) -> int:
        if groups.get(item.nodeid) in slow_groups:
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)  # stable: collection order within each rank


class _XdistGroupShim:
    """pytest-xdist 3.8 sends the tests of one ``xdist_group`` to one worker by appending ``@group`` to each item's
    ``_nodeid``; pytest 9.2 builds ``nodeid`` from ``item._id`` instead, so that append no longer takes and the
    groups are silently ignored (every test its own work unit, each shared build made on both workers). This
    appends the same suffix through ``_id`` when xdist's own did not take; it does nothing once xdist's does."""

    @pytest.hookimpl(trylast=True)  # after xdist's own hook
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        if not hasattr(config, "workerinput") or not config.getvalue("loadgroup"):
            return
        try:
            from _pytest.nodeid import coerce_node_id
        except ImportError:  # a pytest whose nodeid xdist's own hook still sets
            return
        for item in items:
            names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")}
            if names and "@" not in item.nodeid.rsplit("]", 1)[-1]:
                item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(sorted(names))}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_XdistGroupShim(), "fastml-xdist-group-shim")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_XLA_CACHE is not None:  # the process that made it, after the workers have stopped
        shutil.rmtree(_RUN_XLA_CACHE, ignore_errors=True)
