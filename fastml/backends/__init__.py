"""Conversion stage: a trained model becomes a firmware project, compiled for simulation.

One module per backend (``hls4ml_backend``, ``rtl_backend``, ``conifer_backend``), each exposing
``convert(trained, cfg, project_dir) -> FirmwareProject``. Backends are imported lazily so that a
user of one backend does not pay for (or need) the others' dependencies.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..report import Latency, Resources

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..models import TrainedModel

#: A simulation of the firmware: scaled input events (n, n_features) -> outputs (n, n_outputs).
Simulator = Callable[[np.ndarray], np.ndarray]


@dataclass
class FirmwareProject:
    """A written, compiled firmware project.

    Guarantees: ``path`` exists and holds the backend's sources; every entry of ``simulators``
    (level name: csim | emulator | rtl_sim) is ready to call; ``reference`` computes the outputs the
    firmware must reproduce exactly (the quantised model, or a fixed-point reference for BDTs); a
    level the backend could not run is named in ``not_run`` with the reason, never silently dropped.
    """

    backend: str
    path: Path
    simulators: dict[str, Simulator]
    reference: Simulator
    reference_name: str = "quantized model"
    latency: Latency | None = None
    resources: dict[str, Resources] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    not_run: dict[str, str] = field(default_factory=dict)  # level -> why it could not run (reported "not run")
    handle: Any = None  # the backend's own object (hls4ml ModelGraph, da4ml RTLModel, conifer model)


_BACKENDS: dict[str, str] = {
    "hls4ml": "fastml.backends.hls4ml_backend",
    "rtl": "fastml.backends.rtl_backend",
    "conifer": "fastml.backends.conifer_backend",
}


def convert(trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
    """Write and compile ``cfg.firmware.backend``'s project for ``trained`` under ``project_dir``."""
    module = importlib.import_module(_BACKENDS[cfg.firmware.backend])
    return module.convert(trained, cfg, project_dir)
