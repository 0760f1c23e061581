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

from dataclasses import dataclass

import numpy as np

from ..._internal.fixed_point import MAX_WIDTH, APFixed, floor_shift
from ...models.bdt import TreeEnsemble


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


class FixedPointEnsemble(TreeEnsemble):
    """A conifer ensemble dict evaluated in fixed point; vectorised over events.

    Guarantees: ``decision_function`` returns exactly what conifer's ``xilinxhls`` and ``cpp`` emulations
    return for the same precision, shape (n, n_outputs).
    """

    def leaves(self, x: np.ndarray, input_t: APFixed, threshold_t: APFixed) -> np.ndarray:
        """Leaf node index reached in every tree, shape (n, n_trees), with quantised inputs and thresholds."""
        x = np.asarray(x, np.float64)
        x_codes = input_t.to_codes(x)
        w_codes = int(threshold_t.to_codes(1.0))
        # accumulation = (input_t)(x * weight): the product has frac_in + frac_w bits, truncated to frac_in.
        acc = input_t.wrap(floor_shift(x_codes * w_codes, threshold_t.frac))
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
        total = score_t.wrap(floor_shift(total * norm, score_t.frac))
        return score_t.to_float(total)

    def decision_function(self, x: np.ndarray, precision: Precision) -> np.ndarray:
        """Scores the firmware computes for events ``x`` (float inputs, before the input cast), shape (n, n_outputs)."""
        return self.scores_from_leaves(self.leaves(x, precision.input, precision.threshold), precision.score)


def integer_bits_for(max_abs: float, minimum: int = 2) -> int:
    """Integer bits (sign included) so that ``[-max_abs, max_abs]`` fits without wrapping; at least ``minimum``.

    ``minimum`` is 2 because conifer casts the split weight 1.0 and ``norm`` 1.0 to these types, and
    ``ap_fixed<W,1>`` cannot hold 1.0 (it would wrap to -1).
    """
    if max_abs <= 0 or not np.isfinite(max_abs):
        return minimum
    return max(minimum, int(np.floor(np.log2(max_abs))) + 2)


__all__ = ["MAX_WIDTH", "APFixed", "FixedPointEnsemble", "Precision", "TreeEnsemble", "integer_bits_for"]
