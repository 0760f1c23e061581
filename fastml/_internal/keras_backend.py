"""Select the Keras backend before keras is first imported.

JAX is the default (measured faster than TensorFlow for these small MLPs on CPU; see README).
Set ``KERAS_BACKEND=tensorflow`` (or ``torch``) in the environment to switch.
"""

from __future__ import annotations

import os

DEFAULT_BACKEND = "jax"


def ensure_backend() -> str:
    """Set ``KERAS_BACKEND`` to the default unless the user chose one; returns the backend in use."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    # XLA's CPU client otherwise grabs all cores' worth of threads per process and prints noise.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return os.environ["KERAS_BACKEND"]
