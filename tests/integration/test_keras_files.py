"""Keras files from the field, built: the HGQ 1 proxy jet tagger of the peer-model corpus (../shared/peer-models)
compiled with hls4ml and verified with zero mismatches, through kind keras (the importer found from the file's
content). The per-form reading and rebuild checks are in tests/unit/models/test_keras_files.py."""

from __future__ import annotations

from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "peer-models"


@pytest.mark.slow
def test_hgq1_proxy_builds_bit_exact_on_hls4ml(tmp_path: Path) -> None:
    import yaml

    from fastml.cli import main
    from fastml.report import load_report

    if not PEERS.is_dir():
        pytest.skip("../shared/peer-models not present")
    folder = (PEERS / "hgq1_jet_classifier").resolve()
    raw = yaml.safe_load((folder / "recipe.yaml").read_text())
    raw["model"]["path"] = str(folder / raw["model"]["path"])  # the copied recipe lives elsewhere
    raw["verify"]["samples"] = 1000  # few events: the arithmetic is checked exactly per event either way
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    project = tmp_path / "out" / raw["name"]
    report = load_report(project)
    assert report.verification and all(v.mismatches == 0 and v.samples == 1000
                                       for v in report.verification.values())
    assert report.model["selection"]["imported_from"].startswith("HGQ 1 proxy model (Keras 2 .h5)")
    assert (project / "model" / "source_model.h5").is_file()
