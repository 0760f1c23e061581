"""Select the Keras backend before keras is first imported, and keep JAX's compiled programs on disk.

JAX is the default (measured faster than TensorFlow for these small MLPs on CPU; see README).
Set ``KERAS_BACKEND=tensorflow`` (or ``torch``) in the environment to switch.

XLA compilation is most of a short training on CPU (the quick jet tagger: 44 s of which 30 s compiling, on a loaded
2-core EPYC), and every build, scan point and Dask worker of the same network compiles the same programs again. So
fastml turns on JAX's persistent compilation cache: ``FASTML_XLA_CACHE`` names the folder (default
``~/.cache/fastml/xla``, bounded to ``XLA_CACHE_MAX_BYTES``, least recently used out first), ``off`` disables it, and
a ``JAX_COMPILATION_CACHE_DIR`` the user set wins. A cached program is the compiled program itself, so results are
the same bit for bit; JAX keys it by the program, the compile options and the machine, so it is never used across
CPUs it was not compiled for.
"""

from __future__ import annotations

import os
from pathlib import Path

from .compile_cache import user_cache_folder

DEFAULT_BACKEND = "jax"
XLA_CACHE_ENV = "FASTML_XLA_CACHE"
XLA_CACHE_MAX_BYTES = 2 * 1024**3


def xla_cache_dir() -> Path | None:
    """The folder JAX's compilation cache should use, or ``None`` (disabled, or the user set JAX's own variable)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return user_cache_folder(XLA_CACHE_ENV, "xla")


def ensure_backend() -> str:
    """Set ``KERAS_BACKEND`` to the default unless the user chose one, and JAX's compilation cache (read when jax is
    first imported, as the variables below); returns the backend in use."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    # XLA's CPU client otherwise grabs all cores' worth of threads per process and prints noise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cache = xla_cache_dir()
    if cache is not None:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)
        os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(XLA_CACHE_MAX_BYTES))
        # JAX's defaults keep only programs that took over 1 s to compile: a quick training's many smaller ones
        # are most of its compile time (measured: 44 s -> 32 s with the defaults, -> 14 s keeping every program)
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
    return os.environ["KERAS_BACKEND"]
