"""CMS's Level-1 BDTs as published (peer-model corpus) built by ``fastml build`` with 0 mismatches.

The track-quality recipes (conifer JSON, ONNX-ML) build as written, with fewer verification events. The HGCal
multiclass recipe's xilinxhls project takes minutes to compile (180 unrolled trees at -O3), so here it builds
with conifer's cpp emulation (a generic C++ reader, seconds to compile) at the file's own precision
(``ap_ufixed<9,9,AP_RND_CONV,AP_SAT>`` inputs, ``ap_fixed<18,4,AP_RND_CONV,AP_SAT>`` scores): the rounding,
saturation and unsigned types of the reference are checked against ``ap_types`` there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fastml.pipeline import build
from fastml.recipe import load_config

PEERS = Path(__file__).resolve().parents[2] / ".." / "shared" / "peer-models"


def _build(recipe: Path, out: Path, **over: Any) -> Any:
    if not PEERS.is_dir():
        pytest.skip("../shared/peer-models not present")
    overrides: dict[str, Any] = {"firmware": {"output_dir": str(out), **over}, "verify": {"samples": 400}}
    return build(load_config(recipe, overrides), progress=False, log=lambda _: None)


def _bit_exact(report: Any) -> dict[str, Any]:
    levels = dict(report.verification)
    assert levels, "no verification level ran"
    for level, v in levels.items():
        assert v.mismatches == 0 and v.samples >= 400, (level, v)
    return levels


def test_track_quality_conifer_json(tmp_path: Path) -> None:
    report = _build(PEERS / "bdt_cms_l1_trackquality" / "recipe.yaml", tmp_path)
    assert "csim" in _bit_exact(report)
    fw = report.firmware
    assert fw["precision"]["score"] == "ap_fixed<10,5>" and "the same as the model file's" in fw["precision_source"]
    assert report.model["selection"]["form"] == "conifer model JSON"


def test_track_quality_onnx_margin(tmp_path: Path) -> None:
    report = _build(PEERS / "bdt_cms_l1_trackquality" / "recipe_onnx.yaml", tmp_path)
    assert "csim" in _bit_exact(report)
    fw = report.firmware
    assert fw["precision_source"].startswith("search") and "LOGISTIC" in fw["output"]
    assert report.model["selection"]["post_transform"] == "LOGISTIC"


def test_hgcal_multiclass_at_the_files_precision(tmp_path: Path) -> None:
    report = _build(PEERS / "bdt_cms_l1_hgcal_multiclass" / "recipe.yaml", tmp_path, conifer_backend="cpp")
    assert "csim" in _bit_exact(report)
    fw = report.firmware
    assert fw["precision"]["input"] == "ap_ufixed<9,9,AP_RND_CONV,AP_SAT>"
    assert fw["precision"]["score"] == "ap_fixed<18,4,AP_RND_CONV,AP_SAT>"
    assert fw["precision_source"].startswith("the model file's")
