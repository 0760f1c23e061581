"""Diagnosis of a firmware that is not bit-exact: the first layer that diverges, by how much, and why.

``diagnose(project_dir)`` runs a built project's saved verification events (``model/verify_inputs.npz``)
through the quantised model layer by layer (the *reference*) and through the firmware with per-layer
outputs, compares every layer exactly and classifies the first difference. What "the firmware" is
per backend, and what is therefore checked:

- ``hls4ml``: the project's own C++ sources (``firmware/firmware/*.cpp``, ``defines.h``,
  ``parameters.h``, weights, generated code), copied to a scratch folder, with hls4ml's
  ``nnet::save_layer_output`` hook inserted after every layer call and compiled with the project's
  ``build_lib.sh``. An edit a user made to the project (a precision, a rounding mode, a table) is in
  what is diagnosed. Reference per hls4ml layer: the Keras layer of the same name (``<layer>``: its
  output before a split activation, ``<layer>_<activation>``: after it, ``<layer>_iq``: its input
  quantiser's output), taken at the point of the graph the firmware stores: before the next layer's
  input quantiser where hls4ml applies that quantiser inside the next layer's DA kernel
  (``fused_input_quantisers``), after it where hls4ml fused it into this layer's type. A project with
  no Keras model (a QONNX graph) has its outputs compared with the build's saved ``y_ref`` only.
- ``rtl``: da4ml's per-operation interpreter of the model re-traced from ``model/model.keras`` with
  every Keras tensor kept (``trace_model(..., dump=True)``), per layer; the project's saved logic
  (``firmware/model/pipeline.json``, what the RTL is written from) is compared at the output only
  (da4ml's pipelining does not keep layer boundaries), and a difference there that the re-trace does
  not show is reported as such, naming any lookup-table entries that differ.
- ``conifer``: conifer 1.11's emulations return only the summed scores (``decision_function(trees=True)``
  is accepted and ignored by its ``cpp`` and ``xilinxhls`` writers), so per-tree comparison is
  "not run"; the output is compared with fastml's fixed-point reference.

Each backend traces its own firmware (``Backend.diagnose``, in ``fastml/backends/<name>/diagnose.py``); the
comparison is ``fastml.verification.layers``. Values are compared exactly, on the grid the firmware stores
(``StoredGrid``: the layer's ``ap_fixed`` type, or da4ml's per-element (k, i, f)): a layer equal only as
stored is "trimmed" (hls4ml and da4ml keep only the bits the consumers use). Where the consumer's own input
quantiser reads a trimmed layer, the trimming is proven harmless (or not) by applying that quantiser to what
is stored (``check_trimmed_readers``). The worst element is described in the fixed-point type the firmware
stores it in (``ap_fixed<W,I>``: bits, integer bits, distance in LSBs of that type). If every output matches
but a layer differs, the trace itself is at fault: the layer is named as inconsistent and nothing is blamed
(``check_consistency``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ._internal.compat import moved_name
from .backends import backend_names, get_backend
from .errors import FastmlError
from .verification.layers import (
    DIAGNOSIS_FILE,
    Diagnosis,
    FixedType,
    LayerDiff,
    check_consistency,
    classify,
    compare_layer,
    keras_layer_values,
)

#: Default number of saved verification events to diagnose (the trace runs one event per call).
DEFAULT_EVENTS = 2000


def _backend_of(project_dir: Path) -> str:
    report = project_dir / "report.json"
    if report.is_file():
        try:
            return str(json.loads(report.read_text())["backend"])
        except (ValueError, KeyError, UnicodeDecodeError):
            pass
    fw = project_dir / "firmware"
    for name in backend_names():
        if get_backend(name).owns(fw):
            return name
    raise FastmlError(f"{project_dir}: not a fastml project (expected report.json or firmware/ from fastml build)")


def load_events(project_dir: Path, events: int | None = None, inputs: Path | None = None) -> np.ndarray:
    """The events to diagnose: ``inputs`` (an .npz with key ``x``) or the project's saved verification events."""
    path = Path(inputs) if inputs is not None else Path(project_dir) / "model" / "verify_inputs.npz"
    try:
        with np.load(path) as f:
            x = np.asarray(f["x"])
    except FileNotFoundError:
        raise FastmlError(f"{path}: file not found (expected the saved verification events, an .npz with key "
                          "'x')") from None
    except (KeyError, ValueError, OSError) as err:
        raise FastmlError(f"{path}: expected an .npz with key 'x' (events, features): {err}") from None
    if x.ndim < 2 or len(x) == 0:
        # (events, features) or (events, *shape) for models on arrays (constituents, images)
        raise FastmlError(f"{path}: key 'x': expected a non-empty array of events (events, features...), "
                          f"got shape {x.shape}")
    if events is not None:
        if events < 1:
            raise FastmlError(f"--events: expected a positive number of events, got {events}")
        x = x[:events]
    return x


def _saved_outputs(project_dir: Path, n: int) -> np.ndarray | None:
    """The build's reference outputs for the first ``n`` saved verification events, if saved."""
    try:
        with np.load(project_dir / "model" / "verify_inputs.npz") as f:
            return np.asarray(f["y_ref"])[:n] if "y_ref" in f.files else None
    except (OSError, ValueError):
        return None


def diagnose(project_dir: str | Path, events: int | None = DEFAULT_EVENTS, x: np.ndarray | None = None,
             inputs: str | Path | None = None, write: bool = True) -> Diagnosis:
    """Compare a built project's firmware with its quantised model layer by layer.

    ``x`` (or an ``inputs`` .npz with key ``x``) replaces the saved verification events; ``events``
    keeps the first N. Writes ``diagnosis.json`` into the project when ``write``. A backend that cannot
    expose per-layer values sets ``not_run`` with the reason; nothing is guessed.
    """
    typed = Path(project_dir)
    if not typed.is_dir():
        raise FastmlError(f"{typed}: expected a project folder (hls_projects/<name>/ or <name>.failed/)")
    # absolute from here on: the trace compiles and runs in other working directories (build_lib.sh's, the
    # weights' folder), where a path as the user typed it (hls_projects/<name>) would name nothing
    project_dir = typed.resolve()
    backend = _backend_of(project_dir)
    y_saved: np.ndarray | None = None
    if x is None:
        x = load_events(project_dir, events, Path(inputs) if inputs is not None else None)
        if inputs is None:
            y_saved = _saved_outputs(project_dir, len(x))
    elif events is not None:
        x = np.asarray(x)[:events]
    known = backend in backend_names()
    handler = get_backend(backend) if known else None
    diag = Diagnosis(project=project_dir.name, backend=backend,
                     firmware=(handler.diagnose_firmware if handler else "") or backend,
                     reference="quantized model", events=len(x))
    if handler is None:
        diag.not_run = f"backend {backend!r} has no per-layer diagnosis"
    else:
        handler.diagnose(project_dir, x, diag, y_saved)
    check_consistency(diag)
    if write:
        diag.write(project_dir)
    return diag


#: Names this module held in fastml 0.1, now with the code that owns them (kept for one release).
_MOVED = {**dict.fromkeys(("to_grid", "KerasValues", "load_keras", "first_divergence"), "fastml.verification.layers"),
          **dict.fromkeys(("TRACE_CACHE", "HlsLayer", "hls_layers", "instrument", "parse_typedefs", "trace_hls4ml"),
                          "fastml.backends.hls4ml.diagnose")}


def __getattr__(name: str) -> Any:
    return moved_name(__name__, _MOVED, name)


__all__ = ["DIAGNOSIS_FILE", "Diagnosis", "FixedType", "LayerDiff", "classify", "compare_layer", "diagnose",
           "keras_layer_values", "load_events"]
