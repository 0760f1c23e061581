"""Every recipe of the peer corpus (``../shared/peer-models/``: models published by other people) through
``fastml build``, as a user runs it, with its outcome asserted: built with 0 mismatches at every verification
level, or refused in one line naming the reason (only where no exact firmware can exist).

The corpus is read in place (never copied into the project); without it these tests skip, saying so.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # benchmarks/ is a folder of the repo, not the package

from benchmarks.peer_models import OVERRIDES, PEER_DIR, PeerOutcome, corpus_recipes, recipe_id, run_recipe

pytestmark = pytest.mark.slow

#: recipe -> None (builds bit-exact) or a pattern the one-line refusal must match.
EXPECTED: dict[str, str | None] = {
    "bdt_cms_l1_hgcal_multiclass/recipe.yaml": None,
    "bdt_cms_l1_trackquality/recipe.yaml": None,
    "bdt_cms_l1_trackquality/recipe_onnx.yaml": None,
    # float BatchNormalization: qonnx (the reference) computes it in float32, hls4ml with rounded fixed-point
    # constants; an exact build would need per-channel thresholds, which hls4ml cannot build
    "brevitas_tfc_2w2a/recipe.yaml": r"BatchNormalization_0.*float",
    "brevitas_tfc_2w2a/recipe_image.yaml": r"BatchNormalization_0.*float",
    # per-tensor float scales (27.77, 0.088...): no fixed-point firmware computes them exactly
    "brevitas_unsw_nb15/recipe.yaml": r"Quant_0.*not .*power of two|not fixed point",
    "float_keras_3layer/recipe.yaml": None,
    "float_keras_3layer/recipe_as_shipped.yaml": None,
    "float_keras_3layer_bn/recipe.yaml": None,
    "hgq1_jet_classifier/recipe.yaml": None,
    "hgq1_jet_classifier/recipe_as_qkeras.yaml": None,
    # a float graph: nothing in it says which fixed-point arithmetic the firmware should do
    "onnx_float_pytorch_3layer/recipe.yaml": r"three_layer_pytorch\.onnx.*no Quant",
    "qkeras_3layer/recipe.yaml": None,
    "qkeras_3layer/recipe_json_weights.yaml": None,
    "qkeras_deepsets_l1jetid/recipe.yaml": None,
    "qkeras_v3_3layer/recipe.yaml": None,
    "qonnx_jettagging/recipe.yaml": None,
}

#: recipe -> the float edges fastml must have made explicit, as (where, edge) in order (built recipes only).
EDGES: dict[str, list[tuple[str, str]]] = {
    "qkeras_3layer/recipe.yaml": [("input_1", "input"), ("softmax", "output activation")],
    "qonnx_jettagging/recipe.yaml": [("Softmax_0", "output activation"), ("MatMul_0", "input")],
    "hgq1_jet_classifier/recipe.yaml": [],  # its quantisers say exactly what the firmware computes
    "hgq1_jet_classifier/recipe_as_qkeras.yaml": [],
    "bdt_cms_l1_trackquality/recipe.yaml": [],
}
#: recipe -> how the report must say the file was read (``model.selection.imported_from`` starts so).
IMPORTED_FROM: dict[str, str] = {
    "hgq1_jet_classifier/recipe.yaml": "HGQ 1 proxy model (Keras 2 .h5)",
    "qkeras_3layer/recipe_json_weights.yaml": "QKeras",
    "qkeras_v3_3layer/recipe.yaml": "QKeras v3",
}

def _firmware(o: PeerOutcome) -> dict:
    return (o.report or {}).get("firmware", {})


#: recipe -> further checks on the report of a built recipe (what a physicist would look up in it).
DETAILS = {
    "bdt_cms_l1_trackquality/recipe.yaml": lambda o: (
        _firmware(o)["precision"]["score"] == "ap_fixed<10,5>"
        and "the same as the model file's" in _firmware(o)["precision_source"]
        and o.report["model"]["selection"]["form"] == "conifer model JSON"),
    "bdt_cms_l1_trackquality/recipe_onnx.yaml": lambda o: (
        _firmware(o)["precision_source"].startswith("search") and "LOGISTIC" in _firmware(o)["output"]
        and o.report["model"]["selection"]["post_transform"] == "LOGISTIC"),
    "bdt_cms_l1_hgcal_multiclass/recipe.yaml": lambda o: (  # the precision the file ships, honoured
        _firmware(o)["precision"]["input"] == "ap_ufixed<9,9,AP_RND_CONV,AP_SAT>"
        and _firmware(o)["precision"]["score"] == "ap_fixed<18,4,AP_RND_CONV,AP_SAT>"
        and _firmware(o)["precision_source"].startswith("the model file's")),
}

RECIPES = corpus_recipes()
needs_corpus = pytest.mark.skipif(not RECIPES, reason=f"../shared/peer-models not present ({PEER_DIR})")


@needs_corpus
def test_every_corpus_recipe_has_an_expected_outcome() -> None:
    """A model added to the corpus without an expectation here fails, instead of going untested."""
    assert sorted(recipe_id(r) for r in RECIPES) == sorted(EXPECTED)


def _check(outcome: PeerOutcome, refusal: str | None) -> None:
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    if refusal is None:
        assert outcome.built, f"{outcome.recipe}: exit {outcome.returncode}: {outcome.message}"
        assert outcome.levels, f"{outcome.recipe}: no verification level ran"
        for level, v in outcome.levels.items():
            assert v["samples"] >= 1000 and v["mismatches"] == 0, f"{outcome.recipe} {level}: {v}"
        checks = (outcome.report or {}).get("checks", {})
        assert not [k for k, v in checks.items() if v == "fail"], checks
    else:
        assert outcome.returncode == 2, f"{outcome.recipe}: exit {outcome.returncode}: {outcome.stderr[-1000:]}"
        assert len(outcome.error_lines) == 1, outcome.error_lines  # one line, nothing else
        assert re.search(refusal, outcome.message), outcome.message


@needs_corpus
@pytest.mark.parametrize("recipe", [recipe_id(r) for r in RECIPES] or ["none"])
def test_corpus_recipe_outcome(recipe: str, tmp_path: Path) -> None:
    outcome = run_recipe(PEER_DIR / recipe, tmp_path, timeout_s=1200, overrides=OVERRIDES.get(recipe, (None, ""))[0])
    if os.environ.get("FASTML_PEER_RESULTS"):  # kept for the README's table (python -m benchmarks.peer_models)
        outcome.save(Path(os.environ["FASTML_PEER_RESULTS"]))
    _check(outcome, EXPECTED[recipe])
    if outcome.built and outcome.float_edges:  # the cost of every float edge is in the report
        assert outcome.accuracy("float") is not None and outcome.accuracy("quantized") is not None
        for edge in outcome.float_edges:  # the type chosen, and how (auto from the training range / the recipe)
            assert edge["edge"] != "input" or ("ap_" in edge["choice"] and "auto: training range" in edge["choice"])
    if recipe in DETAILS:
        assert DETAILS[recipe](outcome), (outcome.report or {}).get("firmware")
    if recipe in EDGES:
        assert [(e["where"], e["edge"]) for e in outcome.float_edges] == EDGES[recipe]
    if recipe in IMPORTED_FROM:
        selection = (outcome.report or {}).get("model", {}).get("selection", {})
        assert str(selection.get("imported_from", "")).startswith(IMPORTED_FROM[recipe]), selection
    if outcome.built and outcome.project is not None and (outcome.report or {}).get("model", {}).get(
            "selection", {}).get("source") == "loaded":  # the file as given travels with the project
        assert list((outcome.project / "model").glob("source_model*")), outcome.project
