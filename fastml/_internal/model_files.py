"""Reading a saved model back (``model/model.keras`` of a project) with a one-line error for a bad file."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from ..errors import FastmlError
from .keras_backend import ensure_backend


def load_keras_model(path: Path) -> Any:
    """``keras.models.load_model(path, compile=False)`` with HGQ2's layers registered.

    Raises ``FastmlError`` naming the file for a missing, truncated or corrupt file, or one that is not a
    Keras model (e.g. saved by another Keras version), instead of Keras' multi-line traceback.
    """
    path = Path(path)
    if not path.is_file():
        raise FastmlError(f"{path}: no saved model here (expected a .keras file written by fastml build)")
    if not zipfile.is_zipfile(path):
        raise FastmlError(f"{path}: not a .keras archive (truncated or corrupt?); rebuild the project")

    ensure_backend()
    import hgq  # noqa: F401  (registers the HGQ2 layers for loading)
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as err:  # Keras raises anything from ValueError to KeyError for a broken archive
        why = " ".join(str(err).split())[:200] or type(err).__name__
        raise FastmlError(f"{path}: cannot load this Keras model ({type(err).__name__}: {why}); "
                          "expected a model saved by fastml build with the same Keras/HGQ2 versions") from None


__all__ = ["load_keras_model"]
