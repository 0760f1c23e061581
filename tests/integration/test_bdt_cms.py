"""Saturating and rounding score types (as CMS's HGCal multiclass BDT ships them) reproduced exactly by the
conifer reference, in both of conifer's C++ emulations (their sums run in different orders).

The corpus BDTs themselves (conifer JSON, ONNX-ML, the HGCal multiclass at its file's precision) are built by
``tests/integration/test_peer_models.py``, which also checks the precision each build used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastml._internal.fixed_point import APFixed
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


def _saturating_json(path: Path) -> None:
    """Eight stumps with leaves of +-3.3 on two features: partial sums leave ap_fixed<8,4>'s [-8, 8)."""
    rng = np.random.default_rng(5)
    trees = []
    for k in range(8):
        left = float(rng.choice([-3.3, 3.3]))
        trees.append([{"feature": [k % 2, -2, -2], "threshold": [float(rng.uniform(-1, 1)), 0.0, 0.0],
                       "value": [0.0, left, -left], "children_left": [1, -1, -1], "children_right": [2, -1, -1]}])
    doc = {"n_classes": 2, "n_features": 2, "n_trees": 8, "max_depth": 1, "trees": trees, "init_predict": [0.3],
           "norm": 1, "splitting_convention": "<",
           "config": {"input_precision": "ap_fixed<6,3,AP_RND_CONV,AP_SAT>",
                      "score_precision": "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"}}
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("backend", ["xilinxhls", "cpp"])
def test_saturating_rounding_types_match_ap_types(tmp_path: Path, backend: str) -> None:
    """The reference's AP_RND_CONV / AP_SAT casts and its order of saturating sums (HLS: pairwise; cpp: in turn)
    against conifer's compiled emulations, on events where the two orders give different scores."""
    from fastml.backends.conifer.convert import convert
    from fastml.data import Dataset, Scaler
    from fastml.models.bdt import train_bdt
    from fastml.recipe import parse_config
    from fastml.verification import bit_exact_mismatches

    _saturating_json(tmp_path / "sat.json")
    cfg = parse_config({"name": "sat", "model": {"kind": "bdt", "load": "sat.json"},
                        "firmware": {"backend": "conifer", "conifer_backend": backend, "output_dir": str(tmp_path)}},
                       tmp_path / "sat.yaml")
    rng = np.random.default_rng(0)
    x = rng.uniform(-6, 6, size=(3000, 2)).astype(np.float32)  # beyond input_t's [-4, 4): saturates
    y = rng.integers(0, 2, size=3000)
    data = Dataset(x[:1000], y[:1000], x[1000:2000], y[1000:2000], x[2000:], y[2000:], ("a", "b"), ("n", "p"),
                   Scaler(np.zeros(2), np.ones(2)))
    trained = train_bdt(cfg, data)
    project = convert(trained, cfg, tmp_path / backend)
    assert project.info["precision"]["score"] == "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"
    ref, fw = project.reference(x), project.simulators["csim"](x)
    assert bit_exact_mismatches(ref, fw) == (0, None)
    from fastml.backends.conifer.reference import FixedPointEnsemble, Precision

    p = Precision(*(APFixed.parse(s) for s in ("ap_fixed<6,3,AP_RND_CONV,AP_SAT>",) * 2),
                  APFixed.parse("ap_fixed<8,4,AP_RND_CONV,AP_SAT>"))
    other_order = "balanced" if backend == "cpp" else "sequential"
    other = FixedPointEnsemble(trained.ensemble).decision_function(x, p, other_order)
    assert (other != fw).mean() > 0.01  # the events really tell the two orders apart
