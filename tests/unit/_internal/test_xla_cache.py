"""JAX's persistent compilation cache, turned on by ``ensure_backend`` (fastml/_internal/keras_backend.py).

Each case runs in a fresh interpreter: JAX reads the cache settings when it is first imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastml._internal.keras_backend import XLA_CACHE_MAX_BYTES

#: ensure_backend, then jax: the cache folder JAX uses, and a jitted program's result (compiled or loaded).
PROBE = """
import json, os
from fastml._internal.keras_backend import ensure_backend
ensure_backend()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(axis=0) * 3)
y = f(jnp.arange(12.0).reshape(3, 4) / 7)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir, "max": jax.config.jax_compilation_cache_max_size,
                  "y": [float(v) for v in y]}))
"""


def _probe(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "FASTML_XLA"))}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} if folder.is_dir() else set()


def test_compiled_programs_are_kept_in_fastml_xla_cache_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "xla"
    first = _probe({"FASTML_XLA_CACHE": str(cache)})
    assert first["dir"] == str(cache) and first["max"] == XLA_CACHE_MAX_BYTES
    kept = _entries(cache)
    assert any(name.endswith("-cache") for name in kept), kept  # the program, written by the first process
    second = _probe({"FASTML_XLA_CACHE": str(cache)})
    assert second["y"] == first["y"]  # the loaded program computes the same, bit for bit
    assert _entries(cache) == kept  # loaded, not compiled and written again


def test_default_folder_is_under_the_user_cache(tmp_path: Path) -> None:
    assert _probe({"XDG_CACHE_HOME": str(tmp_path)})["dir"] == str(tmp_path / "fastml" / "xla")


@pytest.mark.parametrize("value", ["off", "0", "no"])
def test_off_disables_it(value: str, tmp_path: Path) -> None:
    assert _probe({"FASTML_XLA_CACHE": value, "XDG_CACHE_HOME": str(tmp_path)})["dir"] is None
    assert not (tmp_path / "fastml").exists()


def test_a_folder_the_user_gave_jax_wins(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    got = _probe({"JAX_COMPILATION_CACHE_DIR": str(mine), "FASTML_XLA_CACHE": str(tmp_path / "fastml")})
    assert got["dir"] == str(mine) and got["max"] == -1  # JAX's own settings, untouched
