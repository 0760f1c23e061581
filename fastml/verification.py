"""Verification stage: firmware simulations against the bit-exact reference, and accuracies.

``bit_exact_mismatches`` is the one comparison every backend's check goes through: it compares
element by element, with no tolerance, and names the first difference.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VerificationError
from .report import VerificationLevel

if TYPE_CHECKING:
    from .backends import FirmwareProject


def bit_exact_mismatches(reference: np.ndarray, firmware: np.ndarray) -> tuple[int, dict[str, Any] | None]:
    """Count output elements where ``firmware`` differs from ``reference`` (exact equality).

    Returns the count and, if any, ``{sample, output, reference, firmware}`` of the first one (in
    event order, then output index). Shapes must agree up to a trailing singleton axis.
    """
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    fw = np.asarray(firmware, np.float64).reshape(len(firmware), -1)
    if ref.shape != fw.shape:
        raise VerificationError(f"firmware output shape {fw.shape} differs from the reference's {ref.shape}")
    # NaN never equals NaN: a NaN anywhere is a mismatch, as it should be for fixed-point firmware.
    diff = ref != fw
    n = int(diff.sum())
    if n == 0:
        return 0, None
    sample, output = (int(i) for i in np.argwhere(diff)[0])
    return n, {"sample": sample, "output": output, "reference": float(ref[sample, output]),
               "firmware": float(fw[sample, output])}


def verify_project(project: FirmwareProject, x: np.ndarray, outputs: dict[str, np.ndarray] | None = None,
                   ) -> tuple[dict[str, VerificationLevel], np.ndarray]:
    """Run every simulation level of ``project`` on events ``x`` and compare with its reference.

    Returns the per-level results and the reference outputs; each level's raw outputs are put into
    ``outputs`` when given. Does not raise on mismatches: the caller decides (``require_bit_exact``),
    so the report can still be written.
    """
    reference = np.asarray(project.reference(x))
    levels: dict[str, VerificationLevel] = {}
    for level, simulate in project.simulators.items():
        t0 = time.perf_counter()
        out = np.asarray(simulate(x))
        wall = time.perf_counter() - t0
        if outputs is not None:
            outputs[level] = out
        n, first = bit_exact_mismatches(reference, out)
        levels[level] = VerificationLevel(samples=len(x), mismatches=n, outputs=int(reference.size // len(x)),
                                          reference=project.reference_name, first_mismatch=first, wall_s=wall)
    return levels, reference


def require_bit_exact(levels: dict[str, VerificationLevel], allowed: int = 0) -> None:
    """Raise ``VerificationError`` naming the first mismatch if any level has more than ``allowed``."""
    for level, v in levels.items():
        if v.mismatches > allowed:
            f = v.first_mismatch or {}
            raise VerificationError(
                f"{level}: {v.mismatches} of {v.samples * (v.outputs or 1)} outputs differ from the {v.reference}; "
                f"first at sample {f.get('sample')}, output {f.get('output')}: "
                f"reference {f.get('reference')!r}, firmware {f.get('firmware')!r}"
            )


def correct_predictions(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per event: is the highest score the true class (binary: score > 0 means class 1)."""
    scores = np.asarray(scores).reshape(len(labels), -1)
    pred = (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(axis=1)
    return pred == np.asarray(labels)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of events whose highest score is the true class (binary: score > 0 means class 1)."""
    return float(np.mean(correct_predictions(scores, labels)))


def roc_auc_per_class(scores: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> dict[str, float]:
    """One-vs-rest ROC AUC per class (binary: one AUC for the positive class)."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, np.float64).reshape(len(labels), -1)
    if scores.shape[1] == 1:
        return {class_names[-1]: float(roc_auc_score(labels == 1, scores[:, 0]))}
    out: dict[str, float] = {}
    for i, name in enumerate(class_names):
        positive = labels == i
        if positive.all() or not positive.any():
            continue  # AUC undefined without both classes present
        out[name] = float(roc_auc_score(positive, scores[:, i]))
    return out
