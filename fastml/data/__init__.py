"""Data stage: read a source into a ``Table``, split it reproducibly and scale the inputs.

``load_data(cfg)`` is the one entry point the CLI and notebooks call:

=============  ==========================================================================
``sources``    ``data.source`` -> ``Table``: builtin samples, published sets, users' files
``dataset``    the split and the input scaling (fitted on the training split, recorded)
``table``      the ``Table`` every reader returns (features or particles, labels, names)
``jets``, ``constituents``, ``anomaly``, ``published``, ``fetch``: the readers and generators
=============  ==========================================================================

Inputs are per-event features (events, features), particle lists (events, particles, features), images, or
any other per-event shape a user's file holds (images with channels, sequences: the model's input shape decides);
``input_layout(source)`` tells which a source gives without reading a user's file, so a recipe whose
model does not fit its data can be rejected at ``fastml validate`` time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..types import InputLayout
from .dataset import Dataset, Scaler, padding_mask, split_table
from .sources import (
    ANOMALY_SOURCES,
    BUILTIN_LAYOUTS,
    BUILTIN_MAX_PARTICLES,
    BUILTIN_SAMPLES,
    builtin_sample_path,
    check_table,
    input_layout,
    input_shape,
    read_source,
)
from .table import JET_CLASSES, JET_FEATURES, Table

__all__ = [
    "ANOMALY_SOURCES", "BUILTIN_LAYOUTS", "BUILTIN_MAX_PARTICLES", "BUILTIN_SAMPLES", "JET_CLASSES", "JET_FEATURES",
    "Dataset", "InputLayout", "Scaler", "Table", "builtin_sample_path", "check_table", "input_layout", "input_shape",
    "load_data", "padding_mask", "read_source", "split_table",
]


def load_data(data_cfg: Any, config_dir: Path = Path("."), max_samples: int | None = None) -> Dataset:
    """Read, split and scale the data described by a ``DataConfig``.

    ``max_samples`` (e.g. from ``--quick``) caps the events used, on top of ``data.max_samples``.
    """
    # getattr: notebooks and tests may pass a config-like object from before the particle keys existed
    table = read_source(data_cfg.source, config_dir, data_cfg.x_key, data_cfg.y_key,
                        getattr(data_cfg, "n_particles", None), getattr(data_cfg, "particle_features", None))
    caps = [c for c in (data_cfg.max_samples, max_samples) if c is not None]
    split = data_cfg.split
    return split_table(table, split.train, split.val, split.seed, min(caps) if caps else None, data_cfg.scaling)
