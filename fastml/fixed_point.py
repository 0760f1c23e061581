"""NumPy fixed-point reference of a tree ensemble, bit-exact with conifer's firmware and emulations.

What conifer 1.11 does (``backends/xilinxhls/firmware/BDT_unrolled.h``, ``backends/cpp/include/conifer.h``),
and what this module reproduces with integer arithmetic:

- Types are ``ap_fixed<W,I>`` with the defaults ``AP_TRN`` (drop bits: round towards minus infinity) and
  ``AP_WRAP`` (keep the low W bits, two's complement). Inputs arrive as ``double`` and are cast to
  ``input_t``; thresholds, leaf values, ``init_predict`` and ``norm`` are ``double`` literals cast to
  ``threshold_t`` / ``score_t``; the one-hot split weights (1.0) are cast to ``weight_t``.
- At a node, ``accumulation`` (an ``input_t``) is ``sum_f x[f] * weight[f]``, each product truncated and
  wrapped into ``input_t``; then ``accumulation < threshold`` (xgboost, ydf) or ``<=`` (sklearn, TMVA) is
  compared exactly across the two types; true goes to ``children_left``.
- Per class, ``score = init_predict + sum of the selected leaf values`` in ``score_t`` (every partial sum
  wrapped; with ``AP_WRAP`` the order of additions is irrelevant, so the HLS balanced reduce and the C++
  ``std::accumulate`` agree), then ``score *= norm`` truncated and wrapped into ``score_t``.
- Binary classification has one output (``fn_classes(2) == 1``); multi-class has one per class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_AP_FIXED = re.compile(r"^\s*ap_fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*>\s*$")
#: Widest type the int64 reference handles exactly (products of two values need 2W + 1 bits).
MAX_WIDTH = 31


@dataclass(frozen=True)
class APFixed:
    """A signed ``ap_fixed<width, integer>`` with conifer's default ``AP_TRN`` / ``AP_WRAP`` modes."""

    width: int
    integer: int

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be between 1 and {MAX_WIDTH}, got {self.width}")
        if not -self.width < self.integer <= self.width + 32:
            raise ValueError(f"integer bits must be in ({-self.width}, {self.width + 32}], got {self.integer}")

    @classmethod
    def parse(cls, text: str) -> APFixed:
        """``"ap_fixed<W,I>"`` -> ``APFixed(W, I)``; raises ``ValueError`` for anything else."""
        m = _AP_FIXED.match(text)
        if not m:
            raise ValueError(f"expected 'ap_fixed<W,I>' (e.g. 'ap_fixed<18,8>'), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"ap_fixed<{self.width},{self.integer}>"

    @property
    def frac(self) -> int:
        """Fractional bits: the value of an integer code ``k`` is ``k * 2**-frac``."""
        return self.width - self.integer

    def wrap(self, codes: np.ndarray) -> np.ndarray:
        """Keep the low ``width`` bits of integer codes, as a signed two's-complement number."""
        half = np.int64(1) << (self.width - 1)
        return ((np.asarray(codes, np.int64) + half) & ((half << 1) - 1)) - half

    def to_codes(self, x: Any) -> np.ndarray:
        """Integer codes of ``(ap_fixed<W,I>) double(x)``: floor to the LSB, then wrap (exact for any finite x)."""
        v = np.floor(np.ldexp(np.asarray(x, np.float64), self.frac))
        # fmod on doubles is exact, so this wraps even values far beyond the int64 range correctly.
        modulus = float(2**self.width)
        v = np.mod(v, modulus)
        v = np.where(v >= modulus / 2, v - modulus, v)
        return v.astype(np.int64)

    def to_float(self, codes: np.ndarray) -> np.ndarray:
        """Exact double value of integer codes."""
        return np.ldexp(np.asarray(codes, np.float64), -self.frac)

    def quantize(self, x: Any) -> np.ndarray:
        """``(double)(ap_fixed<W,I>) x`` as float64."""
        return self.to_float(self.to_codes(x))


def _floor_shift(codes: np.ndarray, shift: int) -> np.ndarray:
    """Divide integer codes by ``2**shift`` rounding towards minus infinity (a negative shift multiplies)."""
    return codes >> shift if shift >= 0 else codes << -shift


@dataclass(frozen=True)
class Precision:
    """The types of one conifer build: ``input_t``, ``threshold_t``, ``score_t`` (``weight_t == threshold_t``)."""

    input: APFixed
    threshold: APFixed
    score: APFixed

    @classmethod
    def uniform(cls, t: APFixed) -> Precision:
        return cls(t, t, t)

    @property
    def weight(self) -> APFixed:
        return self.threshold  # conifer's MultiPrecisionConfig default: weight_precision = threshold_precision

    def to_dict(self) -> dict[str, str]:
        return {"input": str(self.input), "threshold": str(self.threshold), "score": str(self.score)}

    def total_bits(self) -> int:
        return self.input.width + self.score.width


class FixedPointEnsemble:
    """A conifer ensemble dict evaluated in fixed point; vectorised over events.

    ``ensemble`` is conifer's ``ensembleDict`` (keys ``trees`` [round][class] with ``feature``,
    ``threshold``, ``value``, ``children_left``, ``children_right``, ``weight``; ``init_predict``, ``norm``,
    ``n_classes``, ``splitting_convention``). Guarantees: ``decision_function`` returns exactly what
    conifer's ``xilinxhls`` and ``cpp`` emulations return for the same precision, shape (n, n_outputs).
    """

    def __init__(self, ensemble: dict[str, Any]) -> None:
        trees = [tree for round_ in ensemble["trees"] for tree in round_]
        self.n_outputs = 1 if int(ensemble["n_classes"]) == 2 else int(ensemble["n_classes"])
        self.tree_class = np.array([c for round_ in ensemble["trees"] for c in range(len(round_))], np.int64)
        n_nodes = max(len(t["feature"]) for t in trees)
        shape = (len(trees), n_nodes)
        self.feature = np.full(shape, -2, np.int64)
        self.left = np.full(shape, -1, np.int64)
        self.right = np.full(shape, -1, np.int64)
        self.threshold = np.zeros(shape, np.float64)
        self.value = np.zeros(shape, np.float64)
        for i, t in enumerate(trees):
            n = len(t["feature"])
            self.feature[i, :n] = t["feature"]
            self.left[i, :n] = t["children_left"]
            self.right[i, :n] = t["children_right"]
            self.threshold[i, :n] = t["threshold"]
            self.value[i, :n] = t["value"]
            for node, weights in enumerate(t["weight"]):
                w = np.asarray(weights, np.float64)
                f = t["feature"][node]
                if f >= 0 and not (np.count_nonzero(w) == 1 and w[f] == 1.0):
                    raise ValueError(f"tree {i} node {node}: only axis-aligned splits (one-hot weights) are supported")
        self.is_leaf = self.left < 0
        self.feature = np.where(self.is_leaf, 0, self.feature)  # any valid column; leaves never compare
        self.init_predict = np.asarray(ensemble["init_predict"], np.float64)[: self.n_outputs]
        self.norm = float(ensemble["norm"])
        self.splitting = str(ensemble["splitting_convention"])
        if self.splitting not in ("<", "<="):
            raise ValueError(f"unknown splitting convention {self.splitting!r}")
        self.depth = _max_depth(self.left, self.right)

    @property
    def n_trees(self) -> int:
        return len(self.tree_class)

    def leaves(self, x: np.ndarray, input_t: APFixed, threshold_t: APFixed) -> np.ndarray:
        """Leaf node index reached in every tree, shape (n, n_trees), with quantised inputs and thresholds."""
        x = np.asarray(x, np.float64)
        x_codes = input_t.to_codes(x)
        w_codes = int(threshold_t.to_codes(1.0))
        # accumulation = (input_t)(x * weight): the product has frac_in + frac_w bits, truncated to frac_in.
        acc = input_t.wrap(_floor_shift(x_codes * w_codes, threshold_t.frac))
        t_codes = threshold_t.to_codes(self.threshold)
        frac = max(input_t.frac, threshold_t.frac)  # compare exactly on the finer grid
        acc = acc << (frac - input_t.frac)
        t_codes = t_codes << (frac - threshold_t.frac)
        n = len(x)
        out = np.empty((n, self.n_trees), np.int64)
        rows = np.arange(n)
        for i in range(self.n_trees):
            node = np.zeros(n, np.int64)
            feat, thr, left, right, leaf = self.feature[i], t_codes[i], self.left[i], self.right[i], self.is_leaf[i]
            for _ in range(self.depth):
                a = acc[rows, feat[node]]
                go_left = a < thr[node] if self.splitting == "<" else a <= thr[node]
                node = np.where(leaf[node], node, np.where(go_left, left[node], right[node]))
            out[:, i] = node
        return out

    def scores_from_leaves(self, leaves: np.ndarray, score_t: APFixed) -> np.ndarray:
        """Per-class scores (float64, exact fixed-point values) for the given leaf indices."""
        v_codes = score_t.to_codes(self.value)  # (n_trees, n_nodes)
        picked = v_codes[np.arange(self.n_trees)[None, :], leaves]  # (n, n_trees)
        total = np.zeros((len(leaves), self.n_outputs), np.int64)
        for c in range(self.n_outputs):
            total[:, c] = picked[:, self.tree_class == c].sum(axis=1)
        total = score_t.wrap(total + score_t.to_codes(self.init_predict)[None, :])
        norm = int(score_t.to_codes(self.norm))
        total = score_t.wrap(_floor_shift(total * norm, score_t.frac))
        return score_t.to_float(total)

    def decision_function(self, x: np.ndarray, precision: Precision) -> np.ndarray:
        """Scores the firmware computes for events ``x`` (float inputs, before the input cast), shape (n, n_outputs)."""
        return self.scores_from_leaves(self.leaves(x, precision.input, precision.threshold), precision.score)

    def float_decision_function(self, x: np.ndarray) -> np.ndarray:
        """The same trees in double precision (no quantisation), shape (n, n_outputs)."""
        x = np.asarray(x, np.float64)
        n = len(x)
        rows = np.arange(n)
        total = np.tile(self.init_predict, (n, 1))
        for i in range(self.n_trees):
            node = np.zeros(n, np.int64)
            for _ in range(self.depth):
                a = x[rows, self.feature[i][node]]
                go_left = a < self.threshold[i][node] if self.splitting == "<" else a <= self.threshold[i][node]
                node = np.where(self.is_leaf[i][node], node, np.where(go_left, self.left[i][node], self.right[i][node]))
            total[:, self.tree_class[i]] += self.value[i][node]
        return total * self.norm

    def max_abs_threshold(self) -> float:
        return float(np.abs(np.where(self.is_leaf, 0.0, self.threshold)).max(initial=0.0))

    def max_abs_leaf(self) -> float:
        return float(np.abs(np.where(self.is_leaf, self.value, 0.0)).max(initial=0.0))


def _max_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Deepest leaf over all trees (number of comparisons on the longest path)."""
    deepest = 0
    for lt, rt in zip(left, right, strict=True):
        frontier, depth = [0], 0
        while True:
            children = [c for n in frontier for c in (lt[n], rt[n]) if c >= 0]
            if not children:
                break
            frontier, depth = children, depth + 1
        deepest = max(deepest, depth)
    return deepest


def integer_bits_for(max_abs: float, minimum: int = 2) -> int:
    """Integer bits (sign included) so that ``[-max_abs, max_abs]`` fits without wrapping; at least ``minimum``.

    ``minimum`` is 2 because conifer casts the split weight 1.0 and ``norm`` 1.0 to these types, and
    ``ap_fixed<W,1>`` cannot hold 1.0 (it would wrap to -1).
    """
    if max_abs <= 0 or not np.isfinite(max_abs):
        return minimum
    return max(minimum, int(np.floor(np.log2(max_abs))) + 2)
