"""The bottom of fastml: shapes and bases every layer shares, importing nothing from the package.

Guarantees stated here hold everywhere: a ``StrictModel`` rejects unknown keys and is immutable; an
``InputLayout`` is one of the three forms of event fastml's data, model kinds and backends agree on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

#: What one event is: a feature vector (events, F), a particle list (events, N, F) or an image
#: (events, rows, columns[, channels]).
InputLayout = Literal["features", "particles", "image"]

#: A simulation of the firmware, or the reference it must reproduce: scaled input events -> outputs (n, n_outputs).
Simulator = Callable[[np.ndarray], np.ndarray]


class StrictModel(BaseModel):
    """Base of every YAML section (recipes, model kinds, scans, budgets): unknown keys are errors, objects are
    immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


__all__ = ["InputLayout", "Simulator", "StrictModel"]
