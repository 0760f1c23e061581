"""fastml: from a quantisation-aware model to verified FPGA firmware.

The stages, each a function the CLI and notebooks share (imported lazily, so ``import fastml``
stays fast)::

    cfg = fastml.load_config("configs/jet_tagger.yaml")
    data = fastml.load_data(cfg.data, cfg.config_dir)
    trained = fastml.train(cfg, data)
    project = fastml.convert(trained, cfg, project_dir)
    levels, reference = fastml.verify(project, data.x_test)
    report = fastml.build(cfg)            # all of the above, written atomically with a report
    report = fastml.build_model(keras_model, "builtin:jets_hlf")   # a model of your own, no YAML
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": ("fastml.config", "load_config"),
    "BuildConfig": ("fastml.config", "BuildConfig"),
    "load_data": ("fastml.data", "load_data"),
    "build_mlp": ("fastml.models.mlp", "build_mlp"),
    "train": ("fastml.models", "train"),
    "convert": ("fastml.backends", "convert"),
    "verify": ("fastml.verification", "verify_project"),
    "bit_exact_mismatches": ("fastml.verification", "bit_exact_mismatches"),
    "build": ("fastml.pipeline", "build"),
    "build_model": ("fastml.byo", "build_model"),  # an in-memory keras.Model from a notebook
    "load_report": ("fastml.report", "load_report"),
    "Report": ("fastml.report", "Report"),
    "check_budgets": ("fastml.gate", "check_budgets"),
    "estimate_project": ("fastml.estimate", "estimate_project"),
    "diagnose": ("fastml.diagnose", "diagnose"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'fastml' has no attribute {name!r}")
