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

    Guarantees: ``x`` is float32 of shape (n, *event_shape) with at least one axis per event, the last of
    ``len(feature_names)`` entries: (n, features) per-event features, (n, particles, features) particle data (a
    padded particle has every feature exactly 0), (n, rows, columns) an image, or any other per-event shape a
    user's file holds (images with channels (n, C, H, W) / (n, H, W, C), sequences (n, T, F)); the model's input
    shape decides which fits. ``y`` is int64 of shape (n,) with values in ``range(len(class_names))``
    (classification) — or float targets when ``class_names`` is empty (regression / autoencoder use).
    """

    x: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.ndim < 2 or self.x.shape[-1] != len(self.feature_names):
            raise ValueError(
                f"x has shape {self.x.shape}, expected (n, {len(self.feature_names)}) "
                f"or (n, ..., {len(self.feature_names)}) (the feature names name the last axis)"
            )
        if self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y has {self.y.shape[0]} rows, x has {self.x.shape[0]}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one event: (features,), (particles, features), or whatever the source holds, e.g. (1, 28, 28)."""
        return tuple(int(d) for d in self.x.shape[1:])
