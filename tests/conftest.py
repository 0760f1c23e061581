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
