"""Verification stage: firmware simulations against the bit-exact reference.

``bit_exact_mismatches`` is the one comparison every backend's check goes through: it compares
element by element, with no tolerance, and names the first difference. ``fastml.verification.layers`` compares
layer by layer (what ``fastml diagnose`` runs). Accuracies and AUCs live in ``fastml.metrics`` (re-exported
here, where fastml 0.1 had them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import VerificationError
from ..metrics import accuracy, correct_predictions, roc_auc_per_class
from ..report import VerificationLevel

if TYPE_CHECKING:
    from ..backends import FirmwareProject


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


__all__ = ["accuracy", "bit_exact_mismatches", "correct_predictions", "require_bit_exact", "roc_auc_per_class",
           "verify_project"]
