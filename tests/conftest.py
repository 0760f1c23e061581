"""Shared fixtures: expensive artefacts (trained models, compiled firmware) are built once per session."""

from __future__ import annotations

import os
from pathlib import Path

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
def tiny_rtl_trained():
    """The tiny 16 -> 8 -> 5 HGQ2 MLP of tests/tiny_rtl.py, trained once per session, and its test events.

    Shared by the RTL backend (tests/integration/test_rtl.py), the compiled emulator
    (tests/unit/backends/test_rtl_emulator.py) and the estimates (tests/integration/test_estimate.py); each of them
    trained the same seeded model before. Read-only: a test that needs a changed model makes its own.
    """
    from tiny_rtl import tiny_trained_model

    return tiny_trained_model()
