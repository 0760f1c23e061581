"""fastml's exact stand-in for conifer's compiled FixedPointConverter (used by conifer's VHDL model)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fastml.backends.conifer.convert import ExactConverter


@pytest.mark.slow
@pytest.mark.parametrize("type_string", ["ap_fixed<12,5>", "ap_fixed<8,3>"])
def test_exact_converter_equals_conifers_compiled_one(type_string: str, tmp_path: Path) -> None:
    """Each checked in a process of its own: conifer's helper is right for the first type a process loads."""
    import subprocess
    import sys

    from fastml._internal.tools import conifer_env

    x = np.random.default_rng(3).normal(0, 40, 500)
    x = np.concatenate([x, np.round(x * 8) / 8, [0.0, -0.0, 1e-9, -1e-9]])  # values on and beside the grid
    np.save(tmp_path / "x.npy", x)
    script = ("import numpy as np, sys; from conifer.utils import FixedPointConverter; "
              f"c = FixedPointConverter({type_string!r}); x = np.load('x.npy'); "
              "np.save('codes.npy', np.array([c.to_int(v) for v in x])); "
              "np.save('back.npy', np.array([c.from_int(int(i)) for i in range(-300, 300)]))")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env={**os.environ, **conifer_env()},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    exact = ExactConverter(type_string)
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), [exact.to_int(v) for v in x])
    np.testing.assert_array_equal(np.load(tmp_path / "back.npy"), [exact.from_int(i) for i in range(-300, 300)])
