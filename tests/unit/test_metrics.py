"""Trigger metrics (``fastml.metrics``, anomaly detection, issue #17): ROC AUC with ties, thresholds at a
fixed acceptance, efficiency at a trigger rate, teacher agreement."""

from __future__ import annotations

import numpy as np
import pytest


def test_roc_auc_matches_pairwise_counting_with_ties() -> None:
    from fastml.metrics import roc_auc

    rng = np.random.default_rng(0)
    b = rng.integers(0, 5, 300).astype(float)  # quantised scores: many ties
    s = rng.integers(1, 7, 200).astype(float)
    pairs = (s[:, None] > b[None, :]).mean() + 0.5 * (s[:, None] == b[None, :]).mean()
    assert roc_auc(b, s) == pytest.approx(pairs, abs=1e-12)
    assert roc_auc(b, b) == pytest.approx(0.5)


def test_threshold_never_accepts_more_sm_than_asked() -> None:
    from fastml.metrics import threshold_at_acceptance

    sm = np.repeat(np.arange(100.0), 10)  # 1000 events, ties of 10
    t, achieved = threshold_at_acceptance(sm, 0.025)  # 25 allowed: ties make it 20
    assert achieved <= 0.025 and np.mean(sm > t) == achieved
    assert achieved == pytest.approx(0.02)


def test_efficiency_at_rate_says_not_run_when_the_sample_is_too_small() -> None:
    from fastml.metrics import efficiency_at_rates

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(5000, int), np.ones(500, int)]
    scores = np.r_[rng.normal(size=5000), rng.normal(3.0, 1.0, 500)]
    out = efficiency_at_rates(scores, labels, ("sm", "sig"), rates_hz=(1_000.0, 10_000.0))
    assert out["rates"]["1kHz"].startswith("not run: acceptance 2.5e-05 needs at least 40000 SM events")
    assert out["signals"]["sig"]["efficiency"]["1kHz"].startswith("not run")
    ten = out["rates"]["10kHz"]
    assert ten["sm_passing"] == 1  # 5000 x 2.5e-4 = 1.25 -> one SM event above the threshold
    eff = out["signals"]["sig"]["efficiency"]["10kHz"]
    assert eff == pytest.approx(np.mean(scores[5000:] > ten["threshold"]))
    assert 0.5 < out["signals"]["sig"]["auc"] <= 1.0


def test_teacher_agreement() -> None:
    from fastml.metrics import teacher_agreement

    t = np.linspace(0, 1, 100)
    assert teacher_agreement(2 * t + 1, t)["spearman"] == pytest.approx(1.0)
    assert teacher_agreement(-t, t)["pearson"] == pytest.approx(-1.0)
