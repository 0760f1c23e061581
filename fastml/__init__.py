"""fastml: from a quantisation-aware model to verified FPGA firmware.

The package reads as the flow, top-down (``ARCHITECTURE.md`` has the rules)::

    recipe      the YAML recipe, parsed once into typed objects (``load_config``)
    data        events: read, split, scaled (``load_data``)
    models      one module per model kind; ``train`` trains or loads what the recipe names
    backends    one subpackage per firmware backend (hls4ml, rtl, conifer), found by ``get_backend``
    verification  bit-exactness: firmware simulations against the quantised reference (``fastml.verify``);
                ``verification.layers`` compares layer by layer
    metrics     accuracy, AUC, trigger efficiency at a rate
    estimate    latency and resources from open tools (da4ml, yosys), through the backend
    report      ``report.json``: the schema every stage fills; ``report.plots``
    gate        budgets and baselines (``fastml check``)
    diagnose    the first diverging layer of a firmware that is not bit-exact
    synth       vendor synthesis (Vitis HLS, Vivado) where installed
    pipeline    ``build``: all of the above, atomically; ``build_model`` for a model in a notebook
    scan        many builds on Dask
    cli         ``fastml ...`` (verbs in ``commands``)

Below them: ``errors`` (every error class), ``types`` (shared shapes) and ``_internal`` (private helpers:
tools, guards, locks, plugin loading). The stages, each a function the CLI and notebooks share
(imported lazily, so ``import fastml`` stays fast)::

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

from ._internal import compat

__version__ = "0.1.0"

compat.install()  # fastml 0.1's module paths (fastml.config, fastml.csim_cache, ...) for one more release

_LAZY = {
    "load_config": ("fastml.recipe", "load_config"),
    "BuildConfig": ("fastml.recipe", "BuildConfig"),
    "load_data": ("fastml.data", "load_data"),
    "build_mlp": ("fastml.models.mlp", "build_mlp"),
    "train": ("fastml.pipeline", "train"),  # the model kind's training, with the backend's layer check
    "convert": ("fastml.backends", "convert"),
    "get_backend": ("fastml.backends", "get_backend"),
    "verify": ("fastml.verification", "verify_project"),
    "bit_exact_mismatches": ("fastml.verification", "bit_exact_mismatches"),
    "build": ("fastml.pipeline", "build"),
    "build_model": ("fastml.pipeline", "build_model"),  # an in-memory keras.Model from a notebook
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
