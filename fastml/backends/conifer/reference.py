"""NumPy fixed-point reference of a tree ensemble, bit-exact with conifer's firmware and emulations.

What conifer 1.11 does (``backends/xilinxhls/firmware/BDT_unrolled.h``, ``backends/cpp/include/conifer.h``),
and what this module reproduces with integer arithmetic:

- Types are ``ap_fixed<W,I>`` with the defaults ``AP_TRN`` (drop bits: round towards minus infinity) and
  ``AP_WRAP`` (keep the low W bits, two's complement), or whatever ``ap_[u]fixed<W,I,Q,O>`` a model file
  ships (``fastml._internal.fixed_point``). Inputs arrive as ``double`` and are cast to ``input_t``;
  thresholds, leaf values, ``init_predict`` and ``norm`` are ``double`` literals cast to ``threshold_t`` /
  ``score_t``; the one-hot split weights (1.0) are cast to ``weight_t`` (``threshold_t`` unless set).
- At a node, ``accumulation`` (an ``input_t``) is ``sum_f x[f] * weight[f]``, each product cast into
  ``input_t`` with its modes; then ``accumulation < threshold`` (xgboost, ydf) or ``<=`` (sklearn, TMVA,
  and conifer JSON that names no convention) is compared exactly across the two types; true goes to
  ``children_left``.
- Per class, ``score = init_predict + sum of the selected leaf values`` in ``score_t``, every partial sum
  cast back into ``score_t``. With ``AP_WRAP`` the order of additions is irrelevant; with a saturating
  type it is not, so the reference adds in the firmware's order: the HLS balanced ``reduce`` over trees,
  then ``init_predict + that`` (``order="balanced"``: xilinxhls), or ``std::accumulate`` from
  ``init_predict`` (``order="sequential"``: conifer's cpp backend). Then ``score *= norm`` into ``score_t``.
- Binary classification has one output (``fn_classes(2) == 1``); multi-class has one per class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..._internal.fixed_point import MAX_WIDTH, APFixed
from ...models.bdt import TreeEnsemble

#: How the firmware adds the trees' scores (matters only for saturating score types).
SumOrder = Literal["balanced", "sequential"]


@dataclass(frozen=True)
class Precision:
    """The types of one conifer build: ``input_t``, ``threshold_t``, ``score_t``, and ``weight_t``
    (``threshold_t`` unless ``weight_type`` is set, as in conifer's ``MultiPrecisionConfig``)."""

    input: APFixed
    threshold: APFixed
    score: APFixed
    weight_type: APFixed | None = None

    @classmethod
    def uniform(cls, t: APFixed) -> Precision:
        return cls(t, t, t)

    @property
    def weight(self) -> APFixed:
        return self.weight_type or self.threshold

    def to_dict(self) -> dict[str, str]:
        out = {"input": str(self.input), "threshold": str(self.threshold), "score": str(self.score)}
        if self.weight_type is not None:
            out["weight"] = str(self.weight_type)
        return out

    def total_bits(self) -> int:
        return self.input.width + self.score.width


class FixedPointEnsemble(TreeEnsemble):
    """A conifer ensemble dict evaluated in fixed point; vectorised over events.

    Guarantees: ``decision_function`` returns exactly what conifer's ``xilinxhls`` and ``cpp`` emulations
    return for the same precision, shape (n, n_outputs).
    """

    def leaves(self, x: np.ndarray, input_t: APFixed, threshold_t: APFixed, weight_t: APFixed | None = None
               ) -> np.ndarray:
        """Leaf node index reached in every tree, shape (n, n_trees), with quantised inputs and thresholds."""
        x = np.asarray(x, np.float64)
        weight_t = weight_t or threshold_t
        x_codes = input_t.to_codes(x)
        w_codes = int(weight_t.to_codes(1.0))
        # accumulation = (input_t)(x * weight): the product has frac_in + frac_w bits, cast to input_t.
        acc = input_t.from_codes(x_codes * w_codes, input_t.frac + weight_t.frac)
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

    def scores_from_leaves(self, leaves: np.ndarray, score_t: APFixed, order: SumOrder = "balanced") -> np.ndarray:
        """Per-class scores (float64, exact fixed-point values) for the given leaf indices."""
        v_codes = score_t.to_codes(self.value)  # (n_trees, n_nodes)
        picked = v_codes[np.arange(self.n_trees)[None, :], leaves]  # (n, n_trees)
        init = score_t.to_codes(self.init_predict)
        total = np.zeros((len(leaves), self.n_outputs), np.int64)
        for c in range(self.n_outputs):
            per_tree = picked[:, self.tree_class == c]  # in round order, as conifer lists them
            if score_t.overflow == "AP_WRAP":  # modular: any order gives the same bits
                total[:, c] = score_t.fit(per_tree.sum(axis=1) + init[c])
            elif order == "balanced":
                total[:, c] = score_t.fit(init[c] + _balanced_sum(per_tree, score_t))
            else:
                acc = np.full(len(leaves), init[c], np.int64)
                for k in range(per_tree.shape[1]):
                    acc = score_t.fit(acc + per_tree[:, k])
                total[:, c] = acc
        norm = int(score_t.to_codes(self.norm))
        total = score_t.from_codes(total * norm, 2 * score_t.frac)
        return score_t.to_float(total)

    def decision_function(self, x: np.ndarray, precision: Precision, order: SumOrder = "balanced") -> np.ndarray:
        """Scores the firmware computes for events ``x`` (float inputs, before the input cast), shape (n, n_outputs)."""
        leaves = self.leaves(x, precision.input, precision.threshold, precision.weight)
        return self.scores_from_leaves(leaves, precision.score, order)


def _balanced_sum(codes: np.ndarray, t: APFixed) -> np.ndarray:
    """conifer's HLS ``reduce<score_t, N, OpAdd>``: split at the largest power of two below N, each sum cast to t."""
    n = codes.shape[1]
    if n == 0:
        return np.zeros(len(codes), np.int64)
    if n == 1:
        return codes[:, 0]
    if n == 2:
        return t.fit(codes[:, 0] + codes[:, 1])
    left = 1 << ((n - 1).bit_length() - 1)  # pow2(floorlog2(N - 1))
    return t.fit(_balanced_sum(codes[:, :left], t) + _balanced_sum(codes[:, left:], t))


def integer_bits_for(max_abs: float, minimum: int = 2) -> int:
    """Integer bits (sign included) so that ``[-max_abs, max_abs]`` fits without wrapping; at least ``minimum``.

    ``minimum`` is 2 because conifer casts the split weight 1.0 and ``norm`` 1.0 to these types, and
    ``ap_fixed<W,1>`` cannot hold 1.0 (it would wrap to -1).
    """
    if max_abs <= 0 or not np.isfinite(max_abs):
        return minimum
    return max(minimum, int(np.floor(np.log2(max_abs))) + 2)


__all__ = ["MAX_WIDTH", "APFixed", "FixedPointEnsemble", "Precision", "SumOrder", "TreeEnsemble", "integer_bits_for"]
