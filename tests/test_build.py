"""End-to-end build (``fastml build --quick`` through C-simulation) and the build's safety rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastml.backends import FirmwareProject
from fastml.errors import VerificationError
from fastml.models import TrainedModel
from fastml.pipeline import staging_dir
from fastml.recipe import parse_config
from fastml.verify import bit_exact_mismatches, require_bit_exact, verify_project


# ---------------------------------------------------------------- the main job, quick mode
def test_quick_jet_build_is_bit_exact(quick_jet_build) -> None:
    _, report = quick_jet_build
    csim = report.verification["csim"]
    assert csim.samples >= 1000
    assert csim.mismatches == 0
    assert report.checks["bit_exact_csim"] == "pass"
    # identical outputs imply identical accuracy
    assert report.accuracy.firmware == report.accuracy.quantized
    assert report.accuracy.float is not None and report.accuracy.firmware > 0.4  # 5 classes: chance is 0.2
    assert set(report.auc["firmware"]) == {"g", "q", "W", "Z", "t"}
    assert report.ebops and report.ebops > 0


def test_quick_build_writes_a_complete_project(quick_jet_build) -> None:
    project, report = quick_jet_build
    doc = json.loads((project / "report.json").read_text())
    for key in ("schema_version", "name", "backend", "verification", "accuracy", "latency", "resources", "timings_s"):
        assert key in doc
    assert doc["schema_version"] == 1 and doc["backend"] == "hls4ml"
    assert {"data", "train", "convert", "verify"} <= set(doc["timings_s"])
    assert "| csim | " in (project / "report.md").read_text()
    assert (project / "firmware" / "build_prj.tcl").is_file()  # ready for Vitis HLS
    assert (project / "config.yaml").is_file() and (project / "model" / "model.keras").is_file()
    saved = np.load(project / "model" / "verify_inputs.npz")
    assert saved["x"].shape[0] == report.verification["csim"].samples
    # true classes of the test-split events, so plots and notebooks need not re-read the data
    assert 0 < len(saved["labels"]) <= len(saved["x"]) and set(saved["labels"]) <= set(range(5))
    assert not list(project.parent.glob(".jet_tagger.tmp-*")), "staging folder left behind"
    hls_cfg = (project / "firmware" / "hls4ml_config.yml").read_text()
    assert ".tmp-" not in hls_cfg and str(project.resolve() / "firmware") in hls_cfg


def test_reloaded_model_reproduces_reference(quick_jet_build) -> None:
    import keras

    project, _ = quick_jet_build
    saved = np.load(project / "model" / "verify_inputs.npz")
    model = keras.models.load_model(project / "model" / "model.keras", compile=False)
    out = model.predict(saved["x"][:500], verbose=0)
    assert bit_exact_mismatches(saved["y_ref"][:500], out)[0] == 0


# ---------------------------------------------------------------- bit-exact comparison
def test_bit_exact_mismatches_names_first_difference() -> None:
    ref = np.arange(12, dtype=np.float64).reshape(4, 3)
    fw = ref.copy()
    assert bit_exact_mismatches(ref, fw) == (0, None)
    fw[2, 1] += 2.0**-10
    fw[3, 0] = np.nan
    n, first = bit_exact_mismatches(ref, fw)
    assert n == 2
    assert first == {"sample": 2, "output": 1, "reference": 7.0, "firmware": 7.0 + 2.0**-10}


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(VerificationError, match="shape"):
        bit_exact_mismatches(np.zeros((4, 3)), np.zeros((4, 2)))


def _fake_project(path: Path, perturb: bool) -> FirmwareProject:
    def reference(x: np.ndarray) -> np.ndarray:
        return np.round(x[:, :5] * 64) / 64

    def firmware(x: np.ndarray) -> np.ndarray:
        out = reference(x)
        if perturb:
            out[7, 3] += 1 / 64
        return out

    (path / "firmware").mkdir(parents=True, exist_ok=True)
    return FirmwareProject("hls4ml", path / "firmware", {"csim": firmware}, reference)


def test_verify_project_counts_and_require_names_sample(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 16))
    levels, _ = verify_project(_fake_project(tmp_path, perturb=True), x)
    assert levels["csim"].mismatches == 1 and levels["csim"].samples == 20
    with pytest.raises(VerificationError, match=r"sample 7, output 3"):
        require_bit_exact(levels)


# ---------------------------------------------------------------- atomic project writes
def test_staging_dir_replaces_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "p"
    final.mkdir()
    (final / "good.txt").write_text("v1")
    with pytest.raises(RuntimeError):
        with staging_dir(final) as tmp:
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("boom")
    assert (final / "good.txt").read_text() == "v1" and not (final / "half.txt").exists()
    assert (tmp_path / "p.failed" / "half.txt").is_file()
    with staging_dir(final) as tmp:
        (tmp / "good.txt").write_text("v2")
    assert (final / "good.txt").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "p.failed"]


def _fake_trained(n_classes: int = 5) -> TrainedModel:
    def logits(x: np.ndarray) -> np.ndarray:
        return np.round(x[:, :n_classes] * 64) / 64

    return TrainedModel("mlp", model=None, predict_quantized=logits, predict_float=logits, n_classes=n_classes)


def test_mismatching_firmware_fails_build_and_keeps_last_good_project(
    tmp_path: Path, toy_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fastml.pipeline
    from fastml.pipeline import build

    cfg = parse_config({"name": "toy", "data": {"source": toy_npz.name}, "verify": {"samples": 300},
                        "firmware": {"output_dir": str(tmp_path / "out")}}, toy_npz.parent / "c.yaml")
    monkeypatch.setattr(fastml.pipeline, "train_model", lambda cfg, data, **kw: _fake_trained())
    # the fake model has nothing to estimate or save
    monkeypatch.setattr(fastml.pipeline, "estimate_build", lambda *a, **k: None)
    monkeypatch.setattr(fastml.pipeline, "_save_model", lambda *a, **k: None)
    good = cfg.project_dir
    good.mkdir(parents=True)
    (good / "report.json").write_text('{"previous": "good"}')

    monkeypatch.setattr(fastml.pipeline, "convert", lambda trained, cfg, d: _fake_project(d, perturb=True))
    with pytest.raises(VerificationError, match="csim: 1 of 1500 outputs differ"):
        build(cfg, progress=False, log=lambda m: None)
    assert (good / "report.json").read_text() == '{"previous": "good"}'
    failed = json.loads((good.parent / "toy.failed" / "report.json").read_text())
    assert failed["status"] == "failed" and failed["verification"]["csim"]["mismatches"] == 1

    monkeypatch.setattr(fastml.pipeline, "convert", lambda trained, cfg, d: _fake_project(d, perturb=False))
    report = build(cfg, progress=False, log=lambda m: None)
    assert report.status == "ok" and report.verification["csim"].mismatches == 0
    assert json.loads((good / "report.json").read_text())["status"] == "ok"
