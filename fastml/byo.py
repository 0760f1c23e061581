"""Bring your own model from a notebook: ``build_model(model, data, ...)`` builds a ``keras.Model`` in memory.

It is ``fastml build`` of a ``kind: keras`` recipe that this function writes for you: the model is saved
(``model.save``) and, when the data are arrays, they are saved too, both under
``<output_dir>/.fastml-inputs/`` named by their SHA-256 (so a later call never overwrites what an earlier
project points at); the recipe, with paths relative to the project folder, is what the project keeps as
``config.yaml``, so ``fastml build <output_dir>/<name>/config.yaml`` rebuilds the same firmware. The
build itself is the pipeline's: locked, assembled in a temporary folder and moved into place whole.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ConfigError

if TYPE_CHECKING:
    from .report import Report

#: Folder (inside ``output_dir``) holding the models and arrays notebook builds were made from.
INPUTS_DIR = ".fastml-inputs"


def _store(folder: Path, suffix: str, write: Callable[[Path], None]) -> Path:
    """Write a file with ``write`` and keep it as ``<sha256[:16]><suffix>`` in ``folder`` (atomic rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:16]
        final = folder / f"{digest}{suffix}"
        os.replace(tmp, final)
        return final
    finally:
        tmp.unlink(missing_ok=True)


def _data_section(data: Any, inputs: Path, project_dir: Path) -> dict[str, Any]:
    """The recipe's ``data:`` section for what the notebook passed (arrays are stored in ``inputs``)."""
    from .data import Dataset

    if isinstance(data, str):
        data = {"source": data}
    elif hasattr(data, "model_dump"):  # a DataConfig
        data = data.model_dump(mode="json")
    if isinstance(data, Mapping):
        section = dict(data)
        source = str(section.get("source", "builtin:jets_hlf"))
        if ":" not in source.split("/")[0]:  # a file: relative to the notebook, made relative to the project
            section["source"] = os.path.relpath(Path(source).resolve(), project_dir.resolve())
        return section
    if isinstance(data, Dataset):
        # the splits, in order, already scaled; the recipe re-splits these events with its split seed
        x = np.concatenate([data.x_train, data.x_val, data.x_test])
        y = np.concatenate([data.y_train, data.y_val, data.y_test])
        extra: dict[str, Any] = {"scaling": "none"}
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (np.asarray(a) for a in data)
        extra = {}
    else:
        raise ConfigError(f"build_model: data: expected a data.source string (e.g. 'builtin:jets_hlf' or a file), "
                          f"a data section dict, a Dataset or an (x, y) pair of arrays; got {type(data).__name__}")
    if len(x) != len(y):
        raise ConfigError(f"build_model: data: x has {len(x)} events, y has {len(y)}; expected the same number")
    path = _store(inputs, ".npz", lambda p: np.savez(p, x=np.asarray(x, np.float32), y=np.asarray(y)))
    return {"source": os.path.relpath(path.resolve(), project_dir.resolve()), **extra}


def build_model(model: Any, data: Any, *, name: str = "my_model", firmware: Mapping[str, Any] | None = None,
                verify: Mapping[str, Any] | None = None, budgets: Mapping[str, Any] | None = None,
                output_dir: str | Path = "hls_projects", calibrate: bool = False, trust_code: bool = False,
                quick: bool = False, progress: bool = False, log: Callable[[str], None] = print,
                force: bool = False) -> Report:
    """Build verified firmware of an in-memory HGQ2 ``keras.Model``; returns the same ``Report`` as ``fastml.build``.

    ``data``: a ``data.source`` string (``"builtin:jets_hlf"``, a file path), a ``data:`` section dict, a
    ``Dataset`` (its events are stored already scaled, and re-split by the recipe's seed), or an ``(x, y)``
    pair (stored, split and scaled as any data file). ``firmware`` / ``verify`` / ``budgets``: the recipe
    sections (``fastml/config.py``), e.g. ``firmware={"backend": "rtl"}``. ``calibrate``: re-run HGQ2's
    ``trace_minmax`` on the training split first. Bad input raises a one-line ``ConfigError`` before
    anything is compiled; the project lands in ``<output_dir>/<name>/`` with the recipe that reproduces it.
    """
    from .config import parse_config
    from .keras_backend import ensure_backend
    from .pipeline import build

    ensure_backend()
    import keras

    if not isinstance(model, keras.Model):
        raise ConfigError(f"build_model: model: expected a keras.Model (e.g. an HGQ2 network), got "
                          f"{type(model).__name__}")
    output_dir = Path(output_dir)
    project_dir = output_dir / name
    inputs = output_dir / INPUTS_DIR
    model_file = _store(inputs, ".keras", lambda p: model.save(p))
    raw = {
        "name": name,
        "description": "built from a notebook with fastml.build_model",
        "data": _data_section(data, inputs, project_dir),
        "model": {"kind": "keras", "path": os.path.relpath(model_file.resolve(), project_dir.resolve()),
                  "calibrate": calibrate, "trust_code": trust_code},
        "firmware": {**(firmware or {}), "output_dir": str(output_dir)},
        "verify": dict(verify or {}),
        "budgets": dict(budgets or {}),
    }
    # The recipe is read as if it were the project's own config.yaml, so its relative paths hold for both.
    cfg = parse_config(raw, project_dir.resolve() / "config.yaml")
    return build(cfg, quick=quick, progress=progress, log=log, force=force)


__all__ = ["build_model"]
