"""The rtl backend's side of ``fastml diagnose``: da4ml's per-operation interpreter, per Keras layer.

The model is re-traced from ``model/model.keras`` with every Keras tensor kept (``trace_model(...,
dump=True)``) and compared per layer; the project's saved logic (``firmware/model/pipeline.json``, what the
RTL is written from) is compared at the output only (da4ml's pipelining does not keep layer boundaries), and
a difference there that the re-trace does not show is reported as such, naming any lookup-table entries
that differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..._internal.da4ml import pipeline, trace_keras
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


def _load_saved_logic(fw_dir: Path) -> Any:
    from da4ml.cmvm.types import CombLogic, Pipeline

    pipe, comb = fw_dir / "model" / "pipeline.json", fw_dir / "model" / "comb.json"
    if pipe.is_file():
        return Pipeline.load(str(pipe))
    if comb.is_file():
        return CombLogic.load(comb)
    return None


def _run_logic(logic: Any, x: np.ndarray) -> np.ndarray:
    stages = getattr(logic, "solutions", None) or [logic]
    out = np.asarray(x, np.float64)
    for stage in stages:
        if stage.lookup_tables is not None and len(stage.lookup_tables) == 0:
            stage = stage._replace(lookup_tables=None)  # da4ml 0.5 cannot serialise an empty table list to binary
        if any(op.opcode != 8 and op.data >= 1 << 63 for op in stage.ops):
            # da4ml 0.5.2 keeps some operands as unsigned 64-bit patterns (pipelined convolutions: 2**64 - 4294966654)
            # and its to_binary stores them into an int64 (OverflowError): the same bits, as the signed value
            stage = stage._replace(ops=[op._replace(data=op.data - (1 << 64)) if op.opcode != 8 and op.data >= 1 << 63
                                        else op for op in stage.ops])
        out = np.asarray(stage.predict(out, n_threads=1), np.float64)
    return out.reshape(len(x), -1)


def _table_differences(saved: Any, traced: Any) -> list[str]:
    """Lookup-table entries where the saved logic differs from a fresh trace, stage by stage."""
    stages_s = getattr(saved, "solutions", None) or [saved]
    stages_t = getattr(traced, "solutions", None) or [traced]
    found: list[str] = []
    for s, (a, b) in enumerate(zip(stages_s, stages_t, strict=False)):
        for t, (ta, tb) in enumerate(zip(a.lookup_tables or (), b.lookup_tables or (), strict=False)):
            va, vb = np.asarray(ta.table), np.asarray(tb.table)
            if va.shape != vb.shape:
                found.append(f"stage {s} table {t}: {va.size} entries saved, {vb.size} traced (address width)")
                continue
            for k in np.flatnonzero(va != vb)[:5]:
                found.append(f"stage {s} table {t} entry {int(k)}: saved {int(va[k])}, traced {int(vb[k])}")
    return found


def diagnose_rtl(project_dir: Path, x: np.ndarray, diag: Diagnosis) -> None:
    from da4ml.converter import trace_model
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace

    model = load_keras(project_dir)
    x32 = np.asarray(x, np.float32)
    ref = keras_layer_values(model, x32)
    inp = FixedVariableArrayInput(model.inputs[0].shape[1:], hwconf=HWConfig(1, -1, -1))
    try:
        dumped = trace_model(model, HWConfig(1, -1, -1), inputs=(inp,), dump=True)
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        diag.not_run = f"da4ml cannot trace this model layer by layer: {' '.join(str(err).split())[:200]}"
        return
    by_tensor = {ly.output.name: ly for ly in model.layers if not ly.__class__.__name__ == "InputLayer"}
    names, flat_vars, sizes = [], [], []
    for tensor_name, arr in dumped.items():
        layer = by_tensor.get(tensor_name)
        if layer is None:
            continue
        vs = list(np.ravel(arr))
        names.append(layer)
        sizes.append(len(vs))
        flat_vars.extend(vs)
    comb = comb_trace(list(np.ravel(inp)), flat_vars)
    values = np.asarray(comb.predict(x32.astype(np.float64).reshape(len(x), -1), n_threads=1), np.float64)
    # per element, the bits the logic keeps of each traced value: a tensor read only through a quantiser that
    # wraps (the model's input, reshaped) enters the logic with only the bits that quantiser uses
    kifs = np.asarray(comb.out_kifs)
    readers = set(ref.reader_of.values())  # da4ml's trace applies every layer's input quantiser itself
    offset = 0
    for layer, size in zip(names, sizes, strict=True):
        part = slice(offset, offset + size)
        offset += size
        act = getattr(layer, "activation", None)
        act_name = getattr(act, "__name__", "linear")
        key = f"{layer.name}_{act_name}" if f"{layer.name}_{act_name}" in ref.values else layer.name
        grid = StoredGrid.of_kif(kifs[0][part], kifs[1][part], kifs[2][part])
        reference = ref.values.get(key)
        row = compare_layer(layer.name, layer.__class__.__name__, reference, values[:, part], grid=grid)
        layer_readers = ref.kernel_readers(key, readers)
        if row.status == "trimmed" and reference is not None and layer_readers:
            check_trimmed_readers(row, reference, grid, layer_readers)
        diag.layers.append(row)
    y_ref = np.asarray(model.predict(x32, verbose=0, batch_size=4096), np.float64).reshape(len(x), -1)
    saved = _load_saved_logic(project_dir / "firmware")
    if saved is None:
        diag.notes.append(f"{NOT_RUN}: no firmware/model/pipeline.json or comb.json, the saved logic is unchecked")
        first_divergence(diag)
        return
    y_fw = _run_logic(saved, x32.astype(np.float64).reshape(len(x32), -1))
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)
    first_divergence(diag)
    if diag.output_mismatches and diag.first_divergent_layer is None:
        meta = project_dir / "firmware" / "metadata.json"
        cutoff = json.loads(meta.read_text()).get("latency_cutoff") if meta.is_file() else None
        # the build's own route (trace_keras + pipeline at the recorded cutoff) gives the logic to compare with
        fresh = (pipeline(trace_keras(model), float(cutoff)) if cutoff is not None and hasattr(saved, "solutions")
                 else trace_keras(model))
        diffs = _table_differences(saved, fresh)
        diag.first_divergent_layer = "saved logic"
        if diffs:
            diag.cause = "table"
            diag.hint = ("every layer of a fresh trace of model.keras matches, but the project's saved logic does not: "
                         "its lookup tables differ from the traced ones: " + "; ".join(diffs))
        else:
            diag.cause = "value"
            diag.hint = ("every layer of a fresh trace of model.keras matches, but the project's saved logic "
                         "(firmware/model/pipeline.json, what the RTL is written from) does not: it was edited or "
                         "built by another da4ml version; rebuild the project")

