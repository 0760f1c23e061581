"""Shared fixtures: expensive artefacts (trained models, compiled firmware) are built once per session.

``make test`` runs the suite on two pytest-xdist workers (``-n 2 --dist loadgroup --no-loadscope-reorder``).
A session or module fixture is built once per worker that needs it, so the tests sharing one are sent to the
same worker (an ``xdist_group`` per shared artefact, added below), and the slow work is handed out first: the
groups around a session build, then the other slow tests, then the fast ones, each in collection order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

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


@pytest.fixture(scope="session")
def quick_jet_build(tmp_path_factory: pytest.TempPathFactory):
    """``fastml build configs/jet_tagger.yaml --quick`` run once, through the CLI, into a temp folder.

    Returns (project_dir, report). Other tests (gates, plots, notebooks) reuse this project.
    """
    from fastml.cli import main
    from fastml.report import load_report

    out = tmp_path_factory.mktemp("projects")
    rc = main(["build", str(REPO / "configs" / "jet_tagger.yaml"), "--quick", "--output-dir", str(out),
               "--no-progress"])
    assert rc == 0
    project = out / "jet_tagger"
    return project, load_report(project)

@pytest.fixture(scope="session")
def quick_recipe_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``fastml.pipeline.build(configs/<recipe>, quick=True)``, once per recipe and overrides in the session.

    Call it with the recipe's file name and nested overrides (e.g. ``train={"seed": 1}``); returns the
    project folder. The synthesis estimate (yosys: minutes, benchmarked elsewhere) is off; everything else is the
    recipe's own firmware, verified bit-exact at its levels (C simulation, emulator, verilator). Shared by the
    kinds, anomaly and diagnose tests, so each shipped recipe is built once per session.
    """
    from fastml.pipeline import build
    from fastml.recipe import load_config

    built: dict[str, Path] = {}
    reports: dict[str, Any] = {}  # the Report each build returned

    def get(recipe: str, **overrides: Any) -> Path:
        key = json.dumps([recipe, overrides], sort_keys=True)
        if key not in built:
            out = tmp_path_factory.mktemp("recipe_builds")
            cfg = load_config(REPO / "configs" / recipe, overrides={
                **overrides, "firmware": {"output_dir": str(out), "yosys": False, **overrides.get("firmware", {})}})
            built[key] = cfg.project_dir
            reports[key] = build(cfg, quick=True, progress=False, log=lambda _: None)
        return built[key]

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
CHEAP_SHARED_FIXTURES = frozenset({"repo_root", "toy_npz", "tiny_rtl_trained", "figures_dir"})


def _xdist_group(item: pytest.Item) -> str | None:
    """One group per expensive shared artefact: a session fixture's name, or the test module for module fixtures."""
    defs = item._fixtureinfo.name2fixturedefs
    keys = set()
    for name in item.fixturenames:
        if name in CHEAP_SHARED_FIXTURES or name not in defs or name.startswith("_"):
            continue
        fixturedef = defs[name][-1]
        if fixturedef.baseid == "" and fixturedef.scope == "session":  # pytest's and plugins' own fixtures
            continue
        if fixturedef.scope == "session":
            keys.add(name)
        elif fixturedef.scope in ("module", "package"):
            keys.add(item.module.__name__)
    # quick_jet_build is the one artefact that tests of several modules share: it decides their group alone
    return "quick_jet_build" if "quick_jet_build" in keys else "+".join(sorted(keys)) or None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: nothing to schedule
        return
    groups = {}
    for item in items:
        mark = item.get_closest_marker("xdist_group")  # set by the test itself (notebook 01)
        group = mark.args[0] if mark is not None else _xdist_group(item)
        if group is not None:
            if mark is None:
                item.add_marker(pytest.mark.xdist_group(group))
            groups[item.nodeid] = group
    slow_groups = {g for item in items if item.get_closest_marker("slow") and (g := groups.get(item.nodeid))}

    def rank(item: pytest.Item) -> int:
        group = groups.get(item.nodeid)
        if group == "quick_jet_build":
            return 0
        if group in slow_groups:
            return 1
        return 2 if item.get_closest_marker("slow") else 3

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
