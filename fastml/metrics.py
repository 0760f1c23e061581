"""Figures of merit: classification accuracy and per-class ROC AUC; for anomaly-detection triggers, efficiency at a
fixed rate, ROC AUC and teacher agreement.

A Level-1 trigger runs at the LHC bunch-crossing rate (``BUNCH_CROSSING_HZ`` = 40 MHz); an anomaly trigger
gets a fixed share of the output bandwidth, e.g. 1 kHz, i.e. it may accept a fraction 1 kHz / 40 MHz =
2.5e-5 of Standard Model events. Its threshold is set on SM events so that at most that fraction scores
above it; a signal's efficiency is the fraction of its events scoring above that threshold. An acceptance is
"supported" by a sample only when at least one SM event passes at it (n_sm x acceptance >= 1); otherwise the
figure says "not run: ..." with the number of SM events it would need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


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


BUNCH_CROSSING_HZ: float = 40e6
#: Trigger rates the report gives efficiencies at (1 kHz and 10 kHz of 40 MHz).
DEFAULT_RATES_HZ: tuple[float, ...] = (1_000.0, 10_000.0)


def rate_label(rate_hz: float) -> str:
    """'1kHz', '10kHz', '500Hz' ..."""
    return f"{rate_hz / 1000:g}kHz" if rate_hz >= 1000 else f"{rate_hz:g}Hz"


def roc_auc(background: np.ndarray, signal: np.ndarray) -> float:
    """Probability that a signal event scores above a background event (ties count one half).

    The Mann-Whitney U statistic from ranks, so it is exact for the many ties quantised scores have.
    """
    b, s = np.asarray(background, np.float64).ravel(), np.asarray(signal, np.float64).ravel()
    if b.size == 0 or s.size == 0:
        raise ValueError("roc_auc needs background and signal events")
    both = np.concatenate([b, s])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, np.float64)
    sorted_vals = both[order]
    # average ranks of tied values
    starts = np.flatnonzero(np.r_[True, sorted_vals[1:] != sorted_vals[:-1]])
    ends = np.r_[starts[1:], both.size]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run of ties
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[b.size:].sum() - s.size * (s.size + 1) / 2.0
    return float(u / (b.size * s.size))


def threshold_at_acceptance(sm_scores: np.ndarray, acceptance: float) -> tuple[float, float]:
    """(threshold, achieved SM acceptance): the lowest threshold t with fraction(SM score > t) <= acceptance.

    Accepting means score > t, so ties at the threshold are rejected and the achieved acceptance never
    exceeds the requested one.
    """
    sm = np.sort(np.asarray(sm_scores, np.float64).ravel())[::-1]
    k = int(np.floor(acceptance * sm.size))  # SM events allowed above the threshold
    if k >= sm.size:
        return float(sm[-1]) - 1.0, 1.0
    t = float(sm[k])
    return t, float(np.mean(sm > t))


def efficiency_at_rates(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                        rates_hz: Sequence[float] = DEFAULT_RATES_HZ) -> dict[str, Any]:
    """Per signal: ROC AUC against SM (label 0) and efficiency at each rate (``"not run: ..."`` if unsupported).

    Returns ``{"sm_events": n, "rates": {label: {rate_hz, sm_acceptance, threshold, achieved_sm_acceptance,
    sm_passing} | "not run: ..."}, "signals": {name: {events, auc, efficiency: {label: float | "not run: ..."}}}}``.
    """
    s = np.asarray(scores, np.float64).reshape(len(labels), -1)[:, 0]
    labels = np.asarray(labels)
    sm = s[labels == 0]
    out: dict[str, Any] = {"sm_events": int(sm.size), "rates": {}, "signals": {}}
    thresholds: dict[str, float] = {}
    for rate in rates_hz:
        acc = rate / BUNCH_CROSSING_HZ
        label = rate_label(rate)
        if sm.size * acc < 1:
            out["rates"][label] = (f"not run: acceptance {acc:.2g} needs at least {int(np.ceil(1 / acc))} SM events, "
                                   f"the test split has {sm.size}")
            continue
        t, achieved = threshold_at_acceptance(sm, acc)
        thresholds[label] = t
        out["rates"][label] = {"rate_hz": rate, "sm_acceptance": acc, "threshold": t,
                               "achieved_sm_acceptance": achieved, "sm_passing": int(np.sum(sm > t))}
    for i, name in enumerate(class_names):
        if i == 0:
            continue
        sig = s[labels == i]
        if sig.size == 0 or sm.size == 0:
            out["signals"][name] = {"events": int(sig.size), "auc": None,
                                    "efficiency": "not run: no events of this class or no SM events"}
            continue
        eff: dict[str, Any] = {}
        for label, rate_info in out["rates"].items():
            eff[label] = rate_info if isinstance(rate_info, str) else float(np.mean(sig > thresholds[label]))
        out["signals"][name] = {"events": int(sig.size), "auc": roc_auc(sm, sig), "efficiency": eff}
    return out


def mean_signal_auc(figures: dict[str, Any]) -> float | None:
    """Mean ROC AUC over the signals of an :func:`efficiency_at_rates` result (None if none measured)."""
    aucs = [v["auc"] for v in figures["signals"].values() if v.get("auc") is not None]
    return float(np.mean(aucs)) if aucs else None


def teacher_agreement(student: np.ndarray, teacher: np.ndarray) -> dict[str, float]:
    """How well a student reproduces a teacher's score: Pearson and Spearman correlation, mean absolute error."""
    a = np.asarray(student, np.float64).ravel()
    b = np.asarray(teacher, np.float64).ravel()

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size)
        return r

    def corr(u: np.ndarray, v: np.ndarray) -> float:
        su, sv = u.std(), v.std()
        return float(np.mean((u - u.mean()) * (v - v.mean())) / (su * sv)) if su > 0 and sv > 0 else 0.0

    return {"pearson": corr(a, b), "spearman": corr(ranks(a), ranks(b)), "mae": float(np.mean(np.abs(a - b))),
            "events": int(a.size)}
