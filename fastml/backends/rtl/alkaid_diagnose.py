"""``fastml diagnose`` of an rtl project compiled by alkaid: alkaid's interpreter, per Keras layer.

As ``diagnose`` does for da4ml projects: ``model/model.keras`` is traced again by alkaid with every layer's values
kept (``trace_model(..., dump=True)``, with the settings of the build: ``fastml._internal.alkaid``), and each
layer's input quantiser (``/<layer>/post_iq``) and output (``/<layer>/final``) is compared with the quantised Keras
model; the project's saved logic (``firmware/model/comb.json.gz``, what the RTL is written from) is compared at the
output only (pipelining does not keep layer boundaries), and a difference there that the re-trace does not show
is reported as such.

A project built from a QONNX graph (``model/model.onnx``, no ``model.keras``) has no Keras layers to compare: the
per-layer comparison is "not run", and the saved logic's outputs are compared with the build's saved reference
outputs (qonnx's execution: ``y_ref`` of ``model/verify_inputs.npz``) where the events are the saved ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..._internal import alkaid
from ...errors import FastmlError
from ...report import NOT_RUN
from ...verification.layers import (
    Diagnosis,
    StoredGrid,
    check_trimmed_readers,
    compare_layer,
    first_divergence,
    keras_layer_values,
    load_keras,
)
from .alkaid_testbench import COMB_FILE

#: What ``fastml diagnose`` names as the firmware's side of an alkaid project.
FIRMWARE = "alkaid interpreter (per layer) + the project's saved logic (output)"


def _reference_key(layer: Any, part: str, values: dict[str, np.ndarray]) -> str | None:
    """The ``keras_layer_values`` name of ``layer``'s value that alkaid's dump ``part`` holds."""
    if part == "post_iq":
        iq = getattr(layer, "iq", None) if getattr(layer, "enable_iq", False) else None
        return iq.name if iq is not None and iq.name in values else None
    act = getattr(getattr(layer, "activation", None), "__name__", "linear")
    return f"{layer.name}_{act}" if f"{layer.name}_{act}" in values else layer.name


def _saved_logic_outputs(project_dir: Path, x32: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The project's saved logic (what the RTL is written from) on ``x32``, or None and why it cannot be read."""
    from alkaid.types import CombLogic

    try:
        saved = CombLogic.load(project_dir / "firmware" / COMB_FILE)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return None, (f"{NOT_RUN}: cannot read firmware/{COMB_FILE} ({' '.join(str(err).split())[:120]}), the "
                      "saved logic is unchecked")
    y_fw = np.asarray(saved.predict(x32.astype(np.float64).reshape(len(x32), -1), n_threads=1), np.float64)
    return y_fw.reshape(len(x32), -1), ""


def _diagnose_graph_outputs(project_dir: Path, x: np.ndarray, y_saved: np.ndarray | None, diag: Diagnosis) -> None:
    """A QONNX project: per-layer "not run" (no Keras layers), the saved logic's outputs against ``y_saved``."""
    diag.not_run = ("no model/model.keras in the project (it was built from a QONNX graph, model/model.onnx): "
                    "alkaid's per-layer trace reads Keras layers")
    diag.reference = "the build's saved reference outputs (model/verify_inputs.npz y_ref: qonnx execute_onnx)"
    if y_saved is None:
        diag.notes.append(f"outputs {NOT_RUN}: no saved reference outputs for these events (--inputs)")
        return
    y_fw, why = _saved_logic_outputs(project_dir, np.asarray(x, np.float32))
    if y_fw is None:
        diag.notes.append(why)
        return
    y_ref = np.asarray(y_saved, np.float64).reshape(len(x), -1)
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)


def diagnose_alkaid(project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
    from alkaid.converter import trace_model
    from alkaid.trace import HWConfig, trace

    diag.firmware = FIRMWARE
    try:
        alkaid.version()
    except FastmlError as err:
        diag.not_run = str(err)
        return
    if not (project_dir / "model" / "model.keras").is_file() and (project_dir / "model" / "model.onnx").is_file():
        _diagnose_graph_outputs(project_dir, x, y_saved, diag)
        return
    model = load_keras(project_dir)
    x32 = np.asarray(x, np.float32)
    ref = keras_layer_values(model, x32)
    try:
        dumped = trace_model(model, HWConfig(*alkaid.HW_CONFIG), {"hard_dc": alkaid.HARD_DC},
                             inputs_kif=alkaid.input_format(model), dump=True)
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        diag.not_run = f"alkaid cannot trace this model layer by layer: {' '.join(str(err).split())[:200]}"
        return
    layers = {ly.name: ly for ly in model.layers}
    rows: list[tuple[str, Any, str | None]] = []  # (row name, layer, reference key)
    flat_vars: list[Any] = []
    sizes: list[int] = []
    for key, arrays in dumped.items():
        parts = key.split("/")  # "/<layer>/<part>" at the top level; nested models and "inputs"/"final" skipped
        if len(parts) != 3 or parts[0] or parts[2] not in ("post_iq", "final") or parts[1] not in layers:
            continue
        layer = layers[parts[1]]
        ref_key = _reference_key(layer, parts[2], ref.values)
        if parts[2] == "post_iq" and ref_key is None:
            continue  # a layer without an input quantiser: its post_iq is its input, compared at its producer
        vs = [v for a in arrays for v in np.ravel(a)]
        rows.append((ref_key or layer.name, layer, ref_key))
        sizes.append(len(vs))
        flat_vars.extend(vs)
    inputs = [v for a in dumped["inputs"] for v in np.ravel(a)]
    comb = trace(inputs, flat_vars)
    values = np.asarray(comb.predict(x32.astype(np.float64).reshape(len(x), -1), n_threads=1), np.float64)
    kifs = np.asarray(comb.out_kifs)
    readers = set(ref.reader_of.values())  # alkaid's trace applies every layer's input quantiser itself
    offset = 0
    for (name, layer, ref_key), size in zip(rows, sizes, strict=True):
        part = slice(offset, offset + size)
        offset += size
        grid = StoredGrid.of_kif(kifs[0][part], kifs[1][part], kifs[2][part])
        reference = ref.values.get(ref_key) if ref_key is not None else None
        op = "input quantiser" if ref_key is not None and ref_key == getattr(getattr(layer, "iq", None), "name", "") \
            else layer.__class__.__name__
        row = compare_layer(name, op, reference, values[:, part], grid=grid)
        layer_readers = ref.kernel_readers(ref_key, readers) if ref_key is not None else []
        if row.status == "trimmed" and reference is not None and layer_readers:
            check_trimmed_readers(row, reference, grid, layer_readers)
        diag.layers.append(row)

    y_ref = np.asarray(model.predict(x32, verbose=0, batch_size=4096), np.float64).reshape(len(x), -1)
    y_fw, why = _saved_logic_outputs(project_dir, x32)
    if y_fw is None:
        diag.notes.append(why)
        first_divergence(diag)
        return
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)
    first_divergence(diag)
    if diag.output_mismatches and diag.first_divergent_layer is None:
        diag.first_divergent_layer = "saved logic"
        diag.cause = "value"
        diag.hint = (f"every layer of a fresh alkaid trace of model.keras matches, but the project's saved logic "
                     f"(firmware/{COMB_FILE}, what the RTL is written from) does not: it was edited or built by "
                     "another alkaid version or with other settings; rebuild the project")


__all__ = ["FIRMWARE", "diagnose_alkaid"]
