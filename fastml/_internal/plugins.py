"""Where fastml finds its model kinds and backends: built-in ones by module name, other packages' through
entry points (groups ``fastml.model_kinds`` and ``fastml.backends``), as hls4ml and alkaid find theirs.

A name is resolved to code only when a recipe names it, so ``fastml validate`` of an MLP recipe never
imports the QONNX kind, and ``fastml check`` imports no kind at all. Another package adds a backend with::

    [project.entry-points."fastml.backends"]
    mybackend = "my_package.fastml_backend:MyBackend"    # a fastml.backends.Backend subclass

and a model kind with ``[project.entry-points."fastml.model_kinds"] mykind = "my_package.kind"`` (a module
defining a ``fastml.models.ModelKind`` subclass named ``mykind``).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

MODEL_KINDS = "fastml.model_kinds"
BACKENDS = "fastml.backends"

#: The kinds and backends fastml ships: entry-point group -> name -> ``module`` or ``module:attribute``.
BUILTIN: dict[str, dict[str, str]] = {
    MODEL_KINDS: {name: f"fastml.models.{module}" for name, module in (
        ("deepsets", "deepsets"), ("attention", "attention"), ("autoencoder", "autoencoder"), ("bdt", "bdt"),
        ("conv", "conv"), ("keras", "keras_model"), ("lut_mlp", "lut_mlp"), ("mlp", "mlp"),
        ("qkeras", "qkeras_model"), ("qonnx", "qonnx_model"))},
    BACKENDS: {"hls4ml": "fastml.backends.hls4ml:Hls4mlBackend", "rtl": "fastml.backends.rtl:RtlBackend",
               "conifer": "fastml.backends.conifer:ConiferBackend"},
}


@cache
def _registered(group: str) -> dict[str, str]:
    """Built-in entries first, then other installed packages' (a built-in name cannot be taken over)."""
    found = dict(BUILTIN.get(group, {}))
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep.value)
    return found


def names(group: str) -> tuple[str, ...]:
    """Every name registered in ``group``, built-in first; nothing is imported."""
    return tuple(_registered(group))


def load(group: str, name: str) -> Any:
    """Import what ``name`` points to in ``group``: the module, or its attribute for ``module:attribute``."""
    module, _, attr = _registered(group)[name].partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attr) if attr else loaded


def forget() -> None:
    """Read the entry points again on the next look-up (after installing a plugin in a running session)."""
    _registered.cache_clear()


__all__ = ["BACKENDS", "BUILTIN", "MODEL_KINDS", "forget", "load", "names"]
