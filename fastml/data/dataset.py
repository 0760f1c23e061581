"""A read ``Table`` split reproducibly into train / validation / test, with the input scaling fitted on the
training split only and recorded (``Scaler``), so that firmware inputs can be reproduced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DataError
from .table import Table


def padding_mask(x: np.ndarray) -> np.ndarray:
    """(events, particles) bool, True for padded particles: those whose features are all exactly 0."""
    return np.all(x == 0, axis=-1)


def _masks_padding(x: np.ndarray) -> bool:
    """Events of rank 2 (particles, features) / (time steps, features) / (rows, columns) have padding rows."""
    return x.ndim == 3


@dataclass(frozen=True)
class Scaler:
    """Affine map ``(x - offset) / scale`` applied before the model's input quantiser.

    Which values share statistics depends on the rank of one event:

    - (features,): one offset/scale per feature, over the events;
    - (positions, features) (particles, time steps, the calorimeter image's rows): per feature (the last axis),
      over the events and their non-padded positions; a padded position (every feature 0) stays exactly 0, so a
      Deep Set can still tell padding from particles;
    - rank 3 and more (images with channels (C, H, W) or (H, W, C), ...): one offset and one scale for every value
      (``offset``/``scale`` hold one entry). Which axis holds the channels is not known from the array alone
      (channels first or last), and a convolution needs the same map at every position; for per-channel scaling
      scale the file yourself and set ``data.scaling: none``.

    ``kind`` ``none`` is the identity (offset 0, scale 1): values pass through unchanged.
    """

    offset: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = ((x - self.offset) / self.scale).astype(np.float32)
        if _masks_padding(x):
            out[padding_mask(x)] = 0.0
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Scaler:
        return cls(np.asarray(d["offset"], np.float64), np.asarray(d["scale"], np.float64))

    @classmethod
    def fit(cls, x: np.ndarray, kind: str) -> Scaler:
        """Mean/std per feature (last axis), or of all values for events of rank 3 and more (see the class)."""
        n = x.shape[-1] if x.ndim <= 3 else 1
        if kind == "none":
            return cls(np.zeros(n), np.ones(n))
        if _masks_padding(x):
            x = x[~padding_mask(x)]  # (real particles, features): padding would drag means to 0
        elif x.ndim > 3:
            x = x.reshape(-1, 1)  # every value of every event: one statistic
        if x.shape[0] == 0:
            return cls(np.zeros(n), np.ones(n))
        std = x.std(axis=0, dtype=np.float64)
        return cls(x.mean(axis=0, dtype=np.float64), np.where(std > 0, std, 1.0))


@dataclass(frozen=True)
class Dataset:
    """Scaled train/val/test splits. Guarantees: disjoint splits, float32 inputs, int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    scaler: Scaler
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        """Features per event, or per particle for particle data (the last axis)."""
        return self.x_train.shape[-1]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input: (features,), (particles, features), or e.g. (1, 28, 28) for an image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, Any]:
        """Sizes and provenance, as recorded in the report."""
        return {
            "source": self.metadata.get("source"),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "features": list(self.feature_names),
            "input_shape": list(self.input_shape),
            "classes": list(self.class_names),
            "scaler": self.scaler.to_dict(),
        }


def split_table(table: Table, train: float, val: float, seed: int, max_samples: int | None = None,
                scaling: str = "standard") -> Dataset:
    """Shuffle with ``seed``, cut into train/val/test, fit the scaler on train and apply it to all.

    Guarantees: the same (table, fractions, seed) always gives the same split; no event is in two splits.
    """
    n = len(table.y)
    order = np.random.default_rng(seed).permutation(n)
    if max_samples is not None:
        order = order[:max_samples]
    n_used = len(order)
    n_train, n_val = round(train * n_used), round(val * n_used)
    if min(n_train, n_val, n_used - n_train - n_val) < 1:
        raise DataError(f"{n_used} events are too few to split {train:g}/{val:g}/{1 - train - val:g}")
    idx_train, idx_val, idx_test = np.split(order, [n_train, n_train + n_val])
    # anomaly detection: scale by the Standard Model events only (what the trigger is trained on)
    fit_rows = idx_train
    if "scaler_fit_classes" in table.metadata:
        fit_rows = idx_train[np.isin(table.y[idx_train], table.metadata["scaler_fit_classes"])]
    scaler = Scaler.fit(table.x[fit_rows], scaling)
    return Dataset(
        scaler(table.x[idx_train]), table.y[idx_train],
        scaler(table.x[idx_val]), table.y[idx_val],
        scaler(table.x[idx_test]), table.y[idx_test],
        table.feature_names, table.class_names, scaler,
        {**table.metadata, "split_seed": seed},
    )
