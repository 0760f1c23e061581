"""``kind: bdt`` reading BDTs as CMS ships them: conifer model JSON and ONNX-ML tree ensembles (peer-model corpus),
and one-line refusals of every other file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastml.errors import ConfigError
from fastml.models.bdt import load_model, margin_fn
from fastml.models.bdt_files import LoadedEnsemble, tool_message
from fastml.recipe import load_config, parse_config

PEERS = Path(__file__).resolve().parents[3] / ".." / "shared" / "peer-models"
TRACK_QUALITY = PEERS / "bdt_cms_l1_trackquality"
HGCAL = PEERS / "bdt_cms_l1_hgcal_multiclass"


@pytest.fixture(scope="module", autouse=True)
def _corpus() -> None:
    if not PEERS.is_dir():
        pytest.skip("../shared/peer-models not present")


def _raw_margin(doc: dict[str, Any], x: np.ndarray, convention: str) -> np.ndarray:
    """The file's trees walked as conifer's C++ reader walks them (stop at feature -2), one event at a time."""
    n_out = 1 if doc["n_classes"] == 2 else doc["n_classes"]
    out = np.tile(np.asarray(doc["init_predict"], np.float64)[:n_out], (len(x), 1))
    for e, row in enumerate(x.astype(np.float64)):
        for round_ in doc["trees"]:
            for c, t in enumerate(round_):
                i = 0
                while t["feature"][i] != -2:
                    a, thr = row[t["feature"][i]], t["threshold"][i]
                    left = a < thr if convention == "<" else a <= thr
                    i = t["children_left"][i] if left else t["children_right"][i]
                out[e, c] += t["value"][i]
    return out * doc["norm"]


def _loaded(recipe: Path) -> LoadedEnsemble:
    model = load_model(load_config(recipe))
    assert isinstance(model, LoadedEnsemble)
    return model


def test_conifer_json_before_1_0_track_quality() -> None:
    """CMS's L1 track-quality GBDT: conifer 0.x JSON (no weights, no convention, trees padded under leaves)."""
    model = _loaded(TRACK_QUALITY / "recipe.yaml")
    doc = json.loads((TRACK_QUALITY / "L1_TrackQuality_GBDT_emulation_digitized.json").read_text())
    ens = model.ensemble
    assert model.form == "conifer model JSON" and ens["splitting_convention"] == "<="
    assert (ens["n_trees"], ens["max_depth"], ens["n_classes"], ens["n_features"]) == (60, 3, 2, 7)
    # the padding below leaves is gone, every remaining node is reachable and every split has a one-hot weight
    raw_nodes = sum(len(t["feature"]) for r in doc["trees"] for t in r)
    assert sum(len(t["feature"]) for r in ens["trees"] for t in r) < raw_nodes
    for t in (t for r in ens["trees"] for t in r):
        assert all((lc == -1) == (f < 0) for f, lc in zip(t["feature"], t["children_left"], strict=True))
        assert all(sum(w) == (f >= 0) for f, w in zip(t["feature"], t["weight"], strict=True))
    assert model.precision == dict.fromkeys(("input", "threshold", "weight", "score"), "ap_fixed<10,5>")
    x = np.load(TRACK_QUALITY / "inputs_trackquality7.npz")["x"][:300]
    margin = margin_fn(model)(x)
    assert margin.shape == (300, 1)
    np.testing.assert_allclose(margin, _raw_margin(doc, x, "<="), rtol=0, atol=1e-12)
    # events on a threshold: '<=' sends them left, which a '<' reading would not
    on_threshold = np.tile(x[:1], (1, 1))
    first = doc["trees"][0][0]
    on_threshold[0, first["feature"][0]] = first["threshold"][0]
    np.testing.assert_allclose(margin_fn(model)(on_threshold), _raw_margin(doc, on_threshold, "<="), atol=1e-12)


def test_conifer_1_6_json_multiclass_keeps_the_files_precision() -> None:
    model = _loaded(HGCAL / "recipe.yaml")
    doc = json.loads((HGCAL / "multiclass_EE.json").read_text())
    assert model.ensemble["n_classes"] == 3 and model.ensemble["splitting_convention"] == "<"
    assert model.precision is not None
    assert model.precision["input"] == model.precision["weight"] == "ap_ufixed<9, 9, AP_RND_CONV, AP_SAT>"
    assert model.precision["score"] == "ap_fixed<18, 4, AP_RND_CONV, AP_SAT>"
    assert "conifer 1.6" in model.notes["read_as"]
    x = np.load(HGCAL / "inputs_multiclass8.npz")["x"][:100]
    margin = margin_fn(model)(x)
    assert margin.shape == (100, 3)
    np.testing.assert_allclose(margin, _raw_margin(doc, x, "<"), rtol=0, atol=1e-12)


def test_onnx_tree_ensemble_through_conifers_converter_matches_onnxruntime() -> None:
    model = _loaded(TRACK_QUALITY / "recipe_onnx.yaml")
    assert model.form == "ONNX-ML TreeEnsembleClassifier" and model.notes["post_transform"] == "LOGISTIC"
    assert "margin" in model.notes["output"] and "not in the firmware" in model.notes["output"]
    ens = model.ensemble
    assert (ens["n_trees"], ens["n_classes"], ens["n_features"], ens["library"]) == (60, 2, 8, "onnx")
    x = np.load(TRACK_QUALITY / "inputs_trackquality8_onnx.npz")["x"][:200]
    margin = margin_fn(model)(x)
    from fastml.models.bdt import TreeEnsemble

    # conifer's trees (what the firmware is built from) against the ONNX node read by ONNX-ML's rules
    np.testing.assert_allclose(TreeEnsemble(ens).float_decision_function(x), margin, rtol=0, atol=1e-9)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(TRACK_QUALITY / "GBDT_default.onnx"), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    labels, probs = zip(*(session.run(None, {name: x[i:i + 1]}) for i in range(len(x))), strict=True)
    p1 = np.array([p[0][1] for p in probs])
    np.testing.assert_allclose(1 / (1 + np.exp(-margin[:, 0])), p1, atol=1e-6)
    assert np.array_equal(np.array([lab[0] for lab in labels]), (margin[:, 0] > 0).astype(np.int64))


def _cfg(tmp: Path, load: str) -> Any:
    return parse_config({"name": "t", "model": {"kind": "bdt", "load": load}, "firmware": {"backend": "conifer"}},
                        tmp / "recipe.yaml")


def _refusal(tmp: Path, name: str, content: bytes | str) -> str:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ConfigError) as err:
        load_model(_cfg(tmp, name))
    msg = str(err.value)
    assert "\n" not in msg and "model.load" in msg and name in msg
    return msg


def test_json_neither_xgboost_nor_conifer_is_one_line_naming_both_forms(tmp_path: Path) -> None:
    msg = _refusal(tmp_path, "other.json", json.dumps({"weights": [1, 2], "layers": 3}))
    assert "conifer model JSON" in msg and "xgboost" in msg and "layers" in msg
    assert "conifer model JSON" in _refusal(tmp_path, "list.json", "[1, 2, 3]")
    assert "not JSON" in _refusal(tmp_path, "broken.json", "{ not json")


def test_broken_xgboost_json_has_no_timestamp(tmp_path: Path) -> None:
    msg = _refusal(tmp_path, "xgb.json", json.dumps({"learner": None, "version": [2, 0, 0]}))
    assert "xgboost" in msg
    assert not __import__("re").search(r"\[\d\d:\d\d:\d\d\]|\.h:\d+", msg), msg


def test_tool_message_drops_log_prefix() -> None:
    err = RuntimeError("[21:19:08] /__w/xgboost/xgboost/include/xgboost/json.h:88: Invalid cast, from Null to Object\n"
                       "Stack trace: ...")
    assert tool_message(err).startswith("Invalid cast, from Null to Object")


def test_conifer_json_with_a_broken_tree_names_the_tree(tmp_path: Path) -> None:
    doc = json.loads((TRACK_QUALITY / "L1_TrackQuality_GBDT_emulation_digitized.json").read_text())
    del doc["trees"][3][0]["threshold"]
    msg = _refusal(tmp_path, "cms.json", json.dumps(doc))
    assert "conifer model JSON" in msg and "tree 3" in msg and "'threshold'" in msg
    doc = json.loads((TRACK_QUALITY / "L1_TrackQuality_GBDT_emulation_digitized.json").read_text())
    doc["trees"][0].append(doc["trees"][0][0])  # two trees in a round of a binary model
    assert "round 0" in _refusal(tmp_path, "cms2.json", json.dumps(doc))


def test_onnx_refusals_are_one_line(tmp_path: Path) -> None:
    assert "not a readable ONNX model" in _refusal(tmp_path, "junk.onnx", b"\x08\x07garbage" * 10)
    network = PEERS / "onnx_float_pytorch_3layer" / "three_layer_pytorch.onnx"
    if network.is_file():
        msg = _refusal(tmp_path, "net.onnx", network.read_bytes())
        assert "no TreeEnsembleClassifier" in msg and "Gemm" in msg and "qonnx" in msg


def test_broken_pickle_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "m.pkl").write_bytes(b"\x80\x04garbage")
    cfg = parse_config({"name": "t", "model": {"kind": "bdt", "load": "m.pkl", "trust_pickle": True},
                        "firmware": {"backend": "conifer"}}, tmp_path / "recipe.yaml")
    with pytest.raises(ConfigError, match=r"m\.pkl could not be unpickled") as err:
        load_model(cfg)
    assert "\n" not in str(err.value)


def test_broken_skops_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    assert "not a readable skops file" in _refusal(tmp_path, "m.skops", b"not a zip archive")
