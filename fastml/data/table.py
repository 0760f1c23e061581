"""The in-memory form every data source is read into before splitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Feature columns of the 5-class jet benchmark (OpenML 42468 "hls4ml_lhc_jets_hlf"), in its order.
JET_FEATURES: tuple[str, ...] = (
    "zlogz",
    "c1_b0_mmdt",
    "c1_b1_mmdt",
    "c1_b2_mmdt",
    "c2_b1_mmdt",
    "c2_b2_mmdt",
    "d2_b1_mmdt",
    "d2_b2_mmdt",
    "d2_a1_b1_mmdt",
    "d2_a1_b2_mmdt",
    "m2_b1_mmdt",
    "m2_b2_mmdt",
    "n2_b1_mmdt",
    "n2_b2_mmdt",
    "mass_mmdt",
    "multiplicity",
)
#: Jet classes in label order (label i is JET_CLASSES[i]).
JET_CLASSES: tuple[str, ...] = ("g", "q", "W", "Z", "t")


@dataclass(frozen=True)
class Table:
    """Features and integer labels of one data source, not yet split or scaled.

    Guarantees: ``x`` is float32 of shape (n, len(feature_names)) for per-event features, or
    (n, particles, len(feature_names)) for particle data (features on the last axis; a padded particle
    has every feature exactly 0); ``y`` is int64 of shape (n,) with values in ``range(len(class_names))``
    (classification) — or float targets when ``class_names`` is empty (regression / autoencoder use).
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim not in (2, 3) or self.x.shape[-1] != len(self.feature_names):
            raise ValueError(
                f"x has shape {self.x.shape}, expected (n, {len(self.feature_names)}) "
                f"or (n, particles, {len(self.feature_names)})"
            )
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y has {self.y.shape[0]} rows, x has {self.x.shape[0]}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one event: (features,) or (particles, features)."""
        return tuple(int(d) for d in self.x.shape[1:])
