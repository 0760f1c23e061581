"""Anomaly-detection triggers (issue #17), built: the two quick builds (autoencoder teacher; conv student, whose
teacher trains inside its build) are session fixtures, checked bit-exact at every level with the efficiency at a
fixed rate reported. Event data, recipes and kinds: tests/unit/data/test_data_anomaly.py; trigger metrics:
tests/unit/test_metrics.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastml.recipe import load_config
from fastml.report import load_report

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def _shared_build(quick_recipe_build, recipe: str):
    """The session's ``--quick`` build of a shipped recipe (shared with the diagnose and kinds tests) and the recipe
    it was built from (read from configs/, where its relative paths, e.g. the conv student's teacher, resolve)."""
    project = quick_recipe_build(recipe)
    cfg = load_config(CONFIGS / recipe, overrides={"firmware": {"output_dir": str(project.parent), "yosys": False}})
    assert cfg.project_dir == project
    return load_report(project), cfg


@pytest.fixture(scope="session")
def quick_ae_build(quick_recipe_build):
    return _shared_build(quick_recipe_build, "anomaly_ae.yaml")


@pytest.fixture(scope="session")
def quick_conv_build(quick_recipe_build):
    """The conv student (its teacher trains inside the build)."""
    return _shared_build(quick_recipe_build, "calo_conv.yaml")


def _check_anomaly_report(report, cfg) -> dict:
    assert report.status == "ok"
    assert {"emulator", "rtl_sim"} <= set(report.verification)  # every level the rtl backend runs
    for level in report.verification.values():
        assert level.mismatches == 0 and level.samples >= 1000
    task = report.task
    assert task["task"] == "anomaly_detection"
    signals = ("leptoquark", "h2_tautau", "zprime_ll")
    for level in ("quantized", "firmware", "quantized_test_split"):
        fig = task["levels"][level]
        assert set(fig["signals"]) == set(signals)
        for sig in fig["signals"].values():
            assert 0.0 <= sig["auc"] <= 1.0
            assert set(sig["efficiency"]) == {"1kHz", "10kHz"}
    # the firmware's figures are the quantised model's on the same (bit-exact) events
    assert task["levels"]["firmware"]["signals"] == task["levels"]["quantized"]["signals"]
    assert report.accuracy.firmware == pytest.approx(
        np.mean([s["auc"] for s in task["levels"]["firmware"]["signals"].values()]))
    saved = json.loads((cfg.project_dir / "report.json").read_text())
    assert saved["schema_version"] == 1 and saved["task"]["task"] == "anomaly_detection"
    assert "Signal efficiency at fixed trigger rate" in (cfg.project_dir / "report.md").read_text()
    return task


@pytest.mark.slow
def test_quick_autoencoder_build_is_bit_exact_and_reports_efficiency_at_rate(quick_ae_build) -> None:
    import keras

    report, cfg = quick_ae_build
    task = _check_anomaly_report(report, cfg)
    # the firmware is the encoder + score only: one output per event, no decoder layers
    model = keras.models.load_model(cfg.project_dir / "model" / "model.keras", compile=False)
    assert model.output_shape == (None, 1)
    assert not any(layer.name.startswith(("dec_", "reconstruction")) for layer in model.layers)
    x = np.load(cfg.project_dir / "model" / "verify_inputs.npz")
    assert x["y_ref"].shape == (len(x["x"]), 1) and np.all(x["y_ref"] >= 0)  # a sum of squares
    assert report.ebops is not None and report.ebops > 0
    assert task["levels"]["quantized_test_split"]["sm_events"] > task["levels"]["firmware"]["sm_events"]


@pytest.mark.slow
def test_quick_conv_student_build_is_bit_exact_and_reports_agreement(quick_conv_build) -> None:
    report, cfg = quick_conv_build
    task = _check_anomaly_report(report, cfg)
    agree = task["agreement"]["firmware"]
    assert -1.0 <= agree["spearman"] <= 1.0 and agree["events"] == report.verification["emulator"].samples
    assert task["agreement"]["quantized_test_split"]["spearman"] > 0  # the student learned something of the teacher
    assert set(task["teacher"]["signals"]) == {"leptoquark", "h2_tautau", "zprime_ll"}
    assert report.model["selection"]["teacher"]["model"] == "trained in this build"
    assert "_teacher_test" not in report.model["selection"]
