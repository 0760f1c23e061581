"""Bit-exact comparison and project verification (``fastml.verify``): the first difference is named,
shape mismatches are errors, a perturbed simulator is counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import fake_project

from fastml.errors import VerificationError
from fastml.verification import bit_exact_mismatches, require_bit_exact, verify_project


def test_bit_exact_mismatches_names_first_difference() -> None:
    ref = np.arange(12, dtype=np.float64).reshape(4, 3)
    fw = ref.copy()
    assert bit_exact_mismatches(ref, fw) == (0, None)
    fw[2, 1] += 2.0**-10
    fw[3, 0] = np.nan
    n, first = bit_exact_mismatches(ref, fw)
    assert n == 2
    assert first == {"sample": 2, "output": 1, "reference": 7.0, "firmware": 7.0 + 2.0**-10}


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(VerificationError, match="shape"):
        bit_exact_mismatches(np.zeros((4, 3)), np.zeros((4, 2)))


def test_verify_project_counts_and_require_names_sample(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 16))
    levels, _ = verify_project(fake_project(tmp_path, perturb=True), x)
    assert levels["csim"].mismatches == 1 and levels["csim"].samples == 20
    with pytest.raises(VerificationError, match=r"sample 7, output 3"):
        require_bit_exact(levels)
