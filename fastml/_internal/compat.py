"""The import paths of fastml 0.1 before the package was laid out as the flow, kept for one release.

``import fastml.csim_cache`` (and ``from fastml.config import ...``) still work: the finder below maps
each old module name onto the module that now holds the code, and says so with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType
from typing import Any

#: old module -> the module that holds its code now
MOVED_MODULES: dict[str, str] = {
    "fastml.config": "fastml.recipe",
    "fastml.trigger_metrics": "fastml.metrics",
    "fastml.plots": "fastml.report.plots",
    "fastml.byo": "fastml.pipeline",
    "fastml.tools": "fastml._internal.tools",
    "fastml.guards": "fastml._internal.guards",
    "fastml.project_lock": "fastml._internal.project_lock",
    "fastml.model_files": "fastml._internal.model_files",
    "fastml.distribution": "fastml._internal.distribution",
    "fastml.keras_backend": "fastml._internal.keras_backend",
    "fastml.fixed_point": "fastml.backends.conifer.reference",
    "fastml.csim_cache": "fastml.backends.hls4ml.csim_cache",
    "fastml.csim_split": "fastml.backends.hls4ml.csim_split",
    "fastml.compiled_emulator": "fastml.backends.rtl.emulator",
    "fastml.backends.hls4ml_backend": "fastml.backends.hls4ml.convert",
    "fastml.backends.rtl_backend": "fastml.backends.rtl.convert",
    "fastml.backends.conifer_backend": "fastml.backends.conifer.convert",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and hands back the new module itself (one object under both names)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old name is kept for one release", DeprecationWarning,
                      stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        """The module is the new one, already executed."""


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import fastml`` calls this)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())


def moved_name(module: str, moved: dict[str, str], name: str) -> Any:
    """A module's ``__getattr__`` for names it held in fastml 0.1: ``moved`` maps each to the module that holds it
    now (imported only when the old name is used)."""
    if name in moved:
        return getattr(importlib.import_module(moved[name]), name)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
