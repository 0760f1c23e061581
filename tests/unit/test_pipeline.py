"""The build pipeline's safety rules (``fastml.pipeline``): atomic project writes, and a build whose firmware
mismatches fails and keeps the last good project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_project
from html_page import page_figures

from fastml.errors import VerificationError
from fastml.models import TrainedModel
from fastml.pipeline import staging_dir
from fastml.recipe import parse_config


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

    monkeypatch.setattr(fastml.pipeline, "convert", lambda trained, cfg, d: fake_project(d, perturb=True))
    with pytest.raises(VerificationError, match="csim: 1 of 1500 outputs differ"):
        build(cfg, progress=False, log=lambda m: None)
    assert (good / "report.json").read_text() == '{"previous": "good"}'
    failed = json.loads((good.parent / "toy.failed" / "report.json").read_text())
    assert failed["status"] == "failed" and failed["verification"]["csim"]["mismatches"] == 1
    # the failed build's page says so, and points at the diagnosis
    page = (good.parent / "toy.failed" / "report.html").read_text()
    assert "badge fail" in page and "fastml diagnose" in page
    assert ("verification.csim.mismatches", "1") in page_figures(page)

    monkeypatch.setattr(fastml.pipeline, "convert", lambda trained, cfg, d: fake_project(d, perturb=False))
    report = build(cfg, progress=False, log=lambda m: None)
    assert report.status == "ok" and report.verification["csim"].mismatches == 0
    assert json.loads((good / "report.json").read_text())["status"] == "ok"
    assert ("verification.csim.mismatches", "0") in page_figures((good / "report.html").read_text())  # every build
