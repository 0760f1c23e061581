"""CLI verbs: one module per verb group, each with ``register(subparsers)``.

A command module must import quickly: ``fastml --help`` imports every one of them. So each verb imports
its stage (and through it pydantic, matplotlib, Keras, Dask...) inside the function that runs the verb;
this package is the one place where fastml defers its own imports for start-up time (the layering test,
``tests/contract/test_layering.py``, allows it here and nowhere else without a ``# deferred:`` comment).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..recipe import BuildConfig


def resolve_project(target: str | Path) -> tuple[Path, BuildConfig | None]:
    """Project folder for a CLI target, and the recipe when the target is one.

    ``target`` is a build recipe (``.yaml``/``.yml``: its ``project_dir``) or a project folder
    (returned as is, recipe ``None``). Anything else is a one-line ``FastmlError``.
    """
    from ..errors import FastmlError
    from ..recipe import load_config

    path = Path(target)
    if path.is_dir():
        return path, None
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        cfg = load_config(path)
        return cfg.project_dir, cfg
    raise FastmlError(f"{path}: expected a build config (.yaml) or a project folder (hls_projects/<name>/)")
