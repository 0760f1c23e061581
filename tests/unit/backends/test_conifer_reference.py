"""The NumPy fixed-point reference: ap_fixed casts, split convention, sums, precision search."""

from __future__ import annotations

import numpy as np
import pytest

from fastml.backends.conifer.convert import search_precision
from fastml.backends.conifer.reference import APFixed, FixedPointEnsemble, Precision, integer_bits_for


def _stump_ensemble(threshold: float, convention: str, n_classes: int = 2) -> dict:
    """One round of depth-1 trees on feature 0: left leaf -1.25, right leaf +0.75 (per class, shifted by class)."""
    n_out = 1 if n_classes == 2 else n_classes
    trees = [[{"feature": [0, -2, -2], "threshold": [threshold, 0.0, 0.0], "value": [0.0, -1.25 + c, 0.75 + c],
               "children_left": [1, -1, -1], "children_right": [2, -1, -1], "weight": [[1, 0], [0, 0], [0, 0]]}
              for c in range(n_out)]]
    return {"n_classes": n_classes, "n_features": 2, "n_trees": 1, "max_depth": 1, "trees": trees,
            "init_predict": [0.5] * n_out, "norm": 1, "library": "test", "splitting_convention": convention}


def test_parse_and_format() -> None:
    t = APFixed.parse(" ap_fixed< 18 , 8 > ")
    assert (t.width, t.integer, t.frac, str(t)) == (18, 8, 10, "ap_fixed<18,8>")
    u = APFixed.parse("ap_ufixed<9, 9, AP_RND_CONV, AP_SAT>")  # as conifer 1.6 writes a CMS model's Config
    assert (u.signed, u.rounding, u.overflow, str(u)) == (False, "AP_RND_CONV", "AP_SAT",
                                                          "ap_ufixed<9,9,AP_RND_CONV,AP_SAT>")
    assert APFixed.parse(str(u)) == u and APFixed.parse("ap_fixed<8,3,AP_RND>").overflow == "AP_WRAP"
    for bad in ("ap_fixed<18>", "float", "ap_fixed<64,8>", "ap_fixed<8,3,AP_ROUND>", "ap_fixed<8,3,AP_RND,AP_WRAP_SM>",
                "ap_fixed<8,3,AP_RND,AP_SAT,2>"):
        with pytest.raises(ValueError):
            APFixed.parse(bad)


@pytest.mark.parametrize("mode,expected", [
    # values in LSBs: 2.5, 3.5, -2.5, -3.5, 2.25, -2.75
    ("AP_TRN", [2, 3, -3, -4, 2, -3]),
    ("AP_TRN_ZERO", [2, 3, -2, -3, 2, -2]),
    ("AP_RND", [3, 4, -2, -3, 2, -3]),
    ("AP_RND_ZERO", [2, 3, -2, -3, 2, -3]),
    ("AP_RND_MIN_INF", [2, 3, -3, -4, 2, -3]),
    ("AP_RND_INF", [3, 4, -3, -4, 2, -3]),
    ("AP_RND_CONV", [2, 4, -2, -4, 2, -3]),
])
def test_rounding_modes_from_double_and_from_wider_codes(mode: str, expected: list[int]) -> None:
    t = APFixed(10, 6, rounding=mode)  # LSB 1/16
    lsbs = np.array([2.5, 3.5, -2.5, -3.5, 2.25, -2.75])
    assert t.to_codes(lsbs / 16).tolist() == expected
    # the same values as codes with 2 more fractional bits (a product, a wider sum) round the same way
    assert t.from_codes((lsbs * 4).astype(np.int64), t.frac + 2).tolist() == expected


def test_overflow_modes_and_unsigned() -> None:
    x = np.array([300.0, -5.0, 511.0, 512.0, 7.5])
    assert APFixed.parse("ap_ufixed<9,9,AP_RND_CONV,AP_SAT>").to_codes(x).tolist() == [300, 0, 511, 511, 8]
    assert APFixed.parse("ap_ufixed<9,9>").to_codes(x).tolist() == [300, 507, 511, 0, 7]
    s = APFixed(4, 4, overflow="AP_SAT")  # [-8, 7]
    assert s.fit(np.array([9, -9, 3])).tolist() == [7, -8, 3]
    assert APFixed(4, 4, overflow="AP_SAT_SYM").fit(np.array([-9])).tolist() == [-7]
    assert APFixed(4, 4, overflow="AP_SAT_ZERO").to_codes([9.0, -3.0]).tolist() == [0, -3]


def test_saturating_score_sum_follows_the_firmware_order() -> None:
    """With AP_SAT the order of additions matters: HLS reduces the trees pairwise, conifer's cpp adds in turn."""
    trees = [[{"feature": [-2], "threshold": [0.0], "value": [v], "children_left": [-1], "children_right": [-1],
               "weight": [[0]]}] for v in (3.0, 3.0, -3.0)]
    ens = {"n_classes": 2, "n_features": 1, "n_trees": 3, "max_depth": 0, "trees": trees, "init_predict": [1.0],
           "norm": 1, "library": "test", "splitting_convention": "<"}
    ref = FixedPointEnsemble(ens)
    p = Precision.uniform(APFixed(4, 4, overflow="AP_SAT"))  # integers in [-8, 7]
    x = np.zeros((1, 1))
    # balanced: (3 + 3) + (-3) = 3, then 1 + 3 = 4; sequential: 1 + 3 = 4, 4 + 3 = 7 (saturates), 7 - 3 = 4
    assert ref.decision_function(x, p, "balanced").tolist() == [[4.0]]
    ens["trees"] = [trees[0], trees[0], trees[0], trees[2]]  # 3, 3, 3, -3
    ref = FixedPointEnsemble(ens)
    # balanced: (3 + 3) + (3 - 3) = 6, 1 + 6 = 7; sequential: 1+3=4, 7, 7 (saturated), 4
    assert ref.decision_function(x, p, "balanced").tolist() == [[7.0]]
    assert ref.decision_function(x, p, "sequential").tolist() == [[4.0]]


def test_cast_truncates_towards_minus_infinity_and_wraps() -> None:
    t = APFixed(6, 3)  # LSB 1/8, range [-4, 4)
    x = np.array([0.3, -0.3, 0.125, -0.125, 3.99, 4.0, 4.125, -4.0, -4.01, -7.0, 1e9 + 0.5])
    # 1e9 * 8 is a multiple of 64 (the code range), so 1e9 + 0.5 wraps to 0.5
    assert t.quantize(x).tolist() == [0.25, -0.375, 0.125, -0.125, 3.875, -4.0, -3.875, -4.0, 3.875, 1.0, 0.5]
    assert t.to_codes(x).tolist() == [2, -3, 1, -1, 31, -32, -31, -32, 31, 8, 4]


def test_integer_bits_cover_range() -> None:
    assert integer_bits_for(0.3) == 2  # never below 2: conifer casts 1.0 to these types
    assert integer_bits_for(3.9) == 3
    assert integer_bits_for(4.0) == 4
    t = APFixed(integer_bits_for(13.7) + 4, integer_bits_for(13.7))
    assert t.quantize([13.7, -13.7]).tolist() == [13.6875, -13.75]


@pytest.mark.parametrize("convention,on_threshold_goes", [("<", "right"), ("<=", "left")])
def test_split_convention_on_threshold(convention: str, on_threshold_goes: str) -> None:
    ref = FixedPointEnsemble(_stump_ensemble(0.625, convention))
    p = Precision.uniform(APFixed(10, 4))
    x = np.array([[0.625, 0.0], [0.5, 0.0], [0.75, 0.0], [0.6875, 0.0]])
    leaves = ref.leaves(x, p.input, p.threshold)[:, 0]
    expected_first = 2 if on_threshold_goes == "right" else 1
    assert leaves.tolist() == [expected_first, 1, 2, 2]
    first_score = 0.5 + (0.75 if expected_first == 2 else -1.25)
    assert ref.decision_function(x, p)[:, 0].tolist() == [first_score, -0.75, 1.25, 1.25]


def test_quantisation_moves_events_onto_threshold() -> None:
    # 0.65 floors to 0.625 at 3 fractional bits: with '<' it now goes right like an on-threshold value.
    ref = FixedPointEnsemble(_stump_ensemble(0.625, "<"))
    assert ref.float_decision_function(np.array([[0.6, 0.0]]))[0, 0] == -0.75
    coarse = Precision.uniform(APFixed(7, 4))
    assert ref.decision_function(np.array([[0.6, 0.0], [0.65, 0.0]]), coarse)[:, 0].tolist() == [-0.75, 1.25]


def test_score_sum_wraps_modulo_width() -> None:
    ref = FixedPointEnsemble(_stump_ensemble(0.0, "<", n_classes=3))
    narrow = Precision(APFixed(8, 4), APFixed(8, 4), APFixed(4, 2))  # scores in [-2, 2), LSB 0.25
    out = ref.decision_function(np.array([[1.0, 0.0]]), narrow)
    # class 2: 0.5 + 2.75 = 3.25 wraps to -0.75; class 1: 0.5 + 1.75 = 2.25 wraps to -1.75
    assert out.tolist() == [[1.25, -1.75, -0.75]]


def test_search_picks_narrower_width_for_larger_allowed_loss() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 2))
    y = (x[:, 0] > 0.3).astype(np.int64)
    ref = FixedPointEnsemble(_stump_ensemble(0.3, "<"))
    float_scores = ref.float_decision_function(x)
    strict = search_precision(ref, x, y, float_scores, allowed_loss=0.0)
    loose = search_precision(ref, x, y, float_scores, allowed_loss=0.2)
    assert strict.met and loose.met
    assert loose.precision.total_bits() < strict.precision.total_bits()
    # every accepted row meets its target and is the first acceptable one of its stage
    for result, allowed in ((strict, 0.0), (loose, 0.2)):
        for stage in ("input", "score"):
            rows = [r for r in result.rows if r["stage"] == stage]
            assert rows[-1]["ok"] and rows[-1]["loss"] + rows[-1]["margin"] <= allowed + 1e-12
            assert not any(r["ok"] for r in rows[:-1])


_TYPES = ("ap_fixed<8,3>", "ap_fixed<20,6>", "ap_fixed<31,2>")
_CAST_PROGRAM = """
#include <cstdio>
#include "ap_fixed.h"
int main() {
  double x;
  while (std::scanf("%lf", &x) == 1) {
BODY
    std::printf("\\n");
  }
}
"""


@pytest.fixture(scope="module")
def ap_cast(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A tiny C++ program casting doubles to each type with the real ap_fixed.h; prints the integer codes."""
    import subprocess

    from fastml._internal.tools import conifer_env

    env = conifer_env()
    folder = tmp_path_factory.mktemp("apcast")
    body = "".join(f"    {{ {t} v = x; std::printf(\"%lld \", (long long) v.range().to_int64()); }}\n" for t in _TYPES)
    (folder / "cast.cpp").write_text(_CAST_PROGRAM.replace("BODY", body))
    subprocess.run(["g++", "-O1", "-std=c++14", f"-I{env['XILINX_AP_INCLUDE']}", "cast.cpp", "-o", "cast"],
                   cwd=folder, check=True, capture_output=True)

    def run(x: np.ndarray) -> np.ndarray:
        text = "\n".join(repr(float(v)) for v in x)
        out = subprocess.run([str(folder / "cast")], input=text, capture_output=True, text=True, check=True).stdout
        return np.array([[int(c) for c in line.split()] for line in out.splitlines()], np.int64)

    return run


def test_cast_matches_ap_fixed_header(ap_cast: object) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(scale=s, size=400) for s in (0.01, 1.0, 10.0, 1e4)])
    x = np.concatenate([x, APFixed(8, 3).quantize(x), [0.0, -0.0, 1e12 + 0.37, -1e12 - 0.37, 2.0**40, -(2.0**40)]])
    codes = ap_cast(x)  # type: ignore[operator]
    for i, type_string in enumerate(_TYPES):
        t = APFixed.parse(type_string)
        unsigned = codes[:, i] & ((1 << t.width) - 1)  # range() gives the raw bits; read them as two's complement
        expected = np.where(unsigned >= 1 << (t.width - 1), unsigned - (1 << t.width), unsigned)
        np.testing.assert_array_equal(t.to_codes(x), expected, err_msg=type_string)
