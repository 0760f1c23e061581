"""Stand-ins for a trained model and a compiled project: the pipeline's and verification's own logic tested
without training or compiling (the real ones are in tests/integration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastml.backends import FirmwareProject


def reference(x: np.ndarray) -> np.ndarray:
    """A 5-output "quantised model": the first five inputs on a 1/64 grid."""
    return np.round(x[:, :5] * 64) / 64


def fake_project(path: Path, perturb: bool) -> FirmwareProject:
    """A project whose C-simulation equals ``reference``, or differs at sample 7, output 3 when ``perturb``."""
    def firmware(x: np.ndarray) -> np.ndarray:
        out = reference(x)
        if perturb:
            out[7, 3] += 1 / 64
        return out

    (path / "firmware").mkdir(parents=True, exist_ok=True)
    return FirmwareProject("hls4ml", path / "firmware", {"csim": firmware}, reference)
