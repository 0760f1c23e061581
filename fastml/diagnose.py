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
  quantiser's output).
- ``rtl``: da4ml's per-operation interpreter of the model re-traced from ``model/model.keras`` with
  every Keras tensor kept (``trace_model(..., dump=True)``), per layer; the project's saved logic
  (``firmware/model/pipeline.json``, what the RTL is written from) is compared at the output only
  (da4ml's pipelining does not keep layer boundaries), and a difference there that the re-trace does
  not show is reported as such, naming any lookup-table entries that differ.
- ``conifer``: conifer 1.11's emulations return only the summed scores (``decision_function(trees=True)``
  is accepted and ignored by its ``cpp`` and ``xilinxhls`` writers), so per-tree comparison is
  "not run"; the output is compared with fastml's fixed-point reference.

Values are compared exactly; the worst element is described in the fixed-point type the firmware
stores it in (``ap_fixed<W,I>``: bits, integer bits, distance in LSBs of that type).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FastmlError, ToolError
from .report import NOT_RUN

#: Name of the diagnosis written into the project folder.
DIAGNOSIS_FILE = "diagnosis.json"
#: Folder in the project holding the instrumented (trace) build of the hls4ml sources, reused while they are unchanged.
TRACE_CACHE = ".diagnose"
#: Default number of saved verification events to diagnose (the trace runs one event per call).
DEFAULT_EVENTS = 2000
#: Fraction of the differing elements that must sit at the firmware's extreme to call it saturation.
_SATURATION_SHARE = 0.9
#: At most this many distinct layer inputs behind all mismatches, each always wrong: a table entry.
_MAX_TABLE_ENTRIES = 4


# ---------------------------------------------------------------------------------------------------
# Fixed-point types
# ---------------------------------------------------------------------------------------------------

_TYPE_RE = re.compile(r"^\s*(ap_fixed|ap_ufixed|ap_int|ap_uint)\s*<\s*([^>]*)>\s*$")


@dataclass(frozen=True)
class FixedType:
    """An HLS fixed-point type: ``width`` bits, ``integer`` of them above the binary point (sign included)."""

    width: int
    integer: int
    signed: bool
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"
    text: str = ""

    @classmethod
    def parse(cls, text: str) -> FixedType | None:
        """``ap_fixed<16,6,AP_RND,AP_SAT>`` etc.; None for anything else (a struct, a float type)."""
        m = _TYPE_RE.match(text)
        if m is None:
            return None
        kind, args = m.group(1), [a.strip() for a in m.group(2).split(",") if a.strip()]
        try:
            width = int(args[0])
            integer = width if kind in ("ap_int", "ap_uint") else int(args[1])
        except (IndexError, ValueError):
            return None
        rest = args[2:] if kind in ("ap_fixed", "ap_ufixed") else []
        return cls(width, integer, kind in ("ap_fixed", "ap_int"), rest[0] if rest else "AP_TRN",
                   rest[1] if len(rest) > 1 else "AP_WRAP", " ".join(text.split()))

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        return float(2.0 ** -self.frac)

    @property
    def min(self) -> float:
        return -float(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def max(self) -> float:
        return float(2.0 ** (self.integer - 1 if self.signed else self.integer)) - self.lsb

    def __str__(self) -> str:
        return self.text or f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}>"


# ---------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------


@dataclass
class LayerDiff:
    """One layer's comparison. ``status``: "match", "trimmed" (equal on the firmware type's own grid: hls4ml
    dropped LSBs the next layer does not need), "diverges", or "no reference" (nothing to compare with)."""

    name: str
    operation: str
    status: str
    elements: int
    events: int
    mismatched_elements: int = 0
    mismatched_events: int = 0
    precision: str | None = None
    worst: dict[str, Any] | None = None
    cause: str | None = None
    hint: str | None = None


@dataclass
class Diagnosis:
    """Result of ``diagnose``: per-layer comparison and, where one diverges, the first and why."""

    project: str
    backend: str
    firmware: str
    reference: str
    events: int
    layers: list[LayerDiff] = field(default_factory=list)
    output_mismatches: int | None = None
    output_elements: int | None = None
    first_divergent_layer: str | None = None
    cause: str | None = None
    hint: str | None = None
    not_run: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def diverges(self) -> bool:
        return self.first_divergent_layer is not None or bool(self.output_mismatches)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write(self, project_dir: Path) -> Path:
        path = Path(project_dir) / DIAGNOSIS_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default) + "\n")
        return path

    def lines(self) -> list[str]:
        """The terminal table: one row per layer, then the verdict."""
        out = [f"{self.project}: {self.backend} firmware ({self.firmware}) vs {self.reference}, "
               f"{self.events} events"]
        if self.not_run:
            out.append(f"  per-layer comparison {NOT_RUN}: {self.not_run}")
        if self.layers:
            width = max(12, *(len(ly.name) for ly in self.layers))
            tw = max(10, *(len(ly.precision or "") for ly in self.layers))
            out.append(f"  {'layer':<{width}}  {'status':<12}  {'elements':>9}  {'events':>9}  {'type':<{tw}}  worst")
            for ly in self.layers:
                diff = f"{ly.mismatched_elements}/{ly.elements * ly.events}" if ly.status == "diverges" else ""
                ev = f"{ly.mismatched_events}/{ly.events}" if ly.status == "diverges" else ""
                w = ly.worst or {}
                worst = (f"event {w['event']} [{w['index']}]: ref {w['reference']:g} fw {w['firmware']:g} "
                         f"({w['lsb_distance']:g} LSB)" if w and w.get("lsb_distance") is not None else
                         f"event {w['event']} [{w['index']}]: ref {w['reference']:g} fw {w['firmware']:g}" if w else "")
                out.append(f"  {ly.name:<{width}}  {ly.status:<12}  {diff:>9}  {ev:>9}  "
                           f"{(ly.precision or ''):<{tw}}  {worst}".rstrip())
        if self.output_mismatches is not None:
            out.append(f"  output: {self.output_mismatches} of {self.output_elements} elements differ")
        if self.first_divergent_layer:
            out.append(f"  first divergent layer: {self.first_divergent_layer} ({self.cause})")
        elif not self.not_run and not self.output_mismatches:
            out.append("  no divergence at any layer")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        out.extend(f"  note: {n}" for n in self.notes)
        return out

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of differing elements per layer (log scale); returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(self.layers) + 2), 3.2))
        names = [ly.name for ly in self.layers]
        counts = [ly.mismatched_elements if ly.status == "diverges" else 0 for ly in self.layers]
        colors = ["tab:red" if ly.name == self.first_divergent_layer else
                  "tab:orange" if ly.status == "diverges" else "tab:blue" if ly.status == "trimmed" else "tab:gray"
                  for ly in self.layers]
        ax.bar(range(len(names)), [max(c, 0) for c in counts], color=colors)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("differing elements")
        if any(counts):
            ax.set_yscale("symlog", linthresh=1)
        title = (f"first divergence: {self.first_divergent_layer} ({self.cause})" if self.first_divergent_layer
                 else "no divergence at any layer" if not self.not_run else f"{NOT_RUN}: {self.not_run}")
        ax.set_title(title, fontsize=9)
        return ax


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def to_grid(values: np.ndarray, ftype: FixedType) -> np.ndarray:
    """``values`` on ``ftype``'s LSB grid with its rounding mode, range untouched (no overflow handling)."""
    v = np.ldexp(np.asarray(values, np.float64), ftype.frac)
    mode = ftype.rounding.upper()
    rounded = {"AP_TRN": np.floor(v), "AP_TRN_ZERO": np.trunc(v), "AP_RND": np.floor(v + 0.5),
               "AP_RND_CONV": np.round(v), "AP_RND_MIN_INF": np.ceil(v - 0.5),
               "AP_RND_ZERO": np.sign(v) * np.ceil(np.abs(v) - 0.5),
               "AP_RND_INF": np.sign(v) * np.floor(np.abs(v) + 0.5)}.get(mode, np.floor(v))
    return np.ldexp(rounded, -ftype.frac)


# ---------------------------------------------------------------------------------------------------
# Comparison and classification
# ---------------------------------------------------------------------------------------------------


def compare_layer(name: str, operation: str, ref: np.ndarray | None, fw: np.ndarray,
                  ftype: FixedType | None = None, layer_input: np.ndarray | None = None,
                  is_table: bool = False) -> LayerDiff:
    """Compare one layer's firmware values ``fw`` (events, elements) with ``ref`` exactly and classify."""
    fw = np.asarray(fw, np.float64).reshape(len(fw), -1)
    n, size = fw.shape
    ly = LayerDiff(name=name, operation=operation, status="no reference", elements=size, events=n,
                   precision=str(ftype) if ftype else None)
    if ref is None:
        return ly
    ref = np.asarray(ref, np.float64).reshape(len(ref), -1)
    if ref.shape != fw.shape:
        ly.hint = f"reference has {ref.shape[1]} elements per event, firmware {size}: not compared"
        return ly
    diff = ref != fw
    ly.mismatched_elements = int(diff.sum())
    ly.mismatched_events = int(diff.any(axis=1).sum())
    if ly.mismatched_elements == 0:
        ly.status = "match"
        return ly
    if ftype is not None:
        in_range = (ref >= ftype.min) & (ref <= ftype.max)
        if in_range.all() and np.array_equal(to_grid(ref, ftype), fw):
            # hls4ml's bit-exact pass keeps only the LSBs the next layer needs: equal on this type's grid
            ly.status = "trimmed"
            return ly
    ly.status = "diverges"
    dist = np.where(diff, np.abs(ref - fw), -1.0)
    event, index = (int(i) for i in np.unravel_index(int(np.argmax(dist)), dist.shape))
    worst: dict[str, Any] = {"event": event, "index": index, "reference": float(ref[event, index]),
                             "firmware": float(fw[event, index]), "abs_difference": float(dist[event, index]),
                             "lsb_distance": None}
    if ftype is not None:
        worst.update(bits=ftype.width, integer_bits=ftype.integer, signed=ftype.signed,
                     lsb=ftype.lsb, lsb_distance=float(dist[event, index] / ftype.lsb),
                     type_range=[ftype.min, ftype.max])
    ly.worst = worst
    ly.cause, ly.hint = classify(ref, fw, diff, ftype, layer_input, is_table)
    return ly


def _frac_bits_needed(values: np.ndarray, limit: int = 60) -> int:
    """Fewest fractional bits that represent every value exactly (``limit`` if none up to it does)."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    for f in range(-limit, limit + 1):
        scaled = np.ldexp(v, f)
        if np.all(scaled == np.round(scaled)):
            return f
    return limit


def classify(ref: np.ndarray, fw: np.ndarray, diff: np.ndarray, ftype: FixedType | None,
             layer_input: np.ndarray | None, is_table: bool) -> tuple[str, str]:
    """(cause, hint) for the differing elements of one layer.

    Causes, checked in this order (the first that fits is named):
    ``table``       a table layer whose every wrong output comes from one of a few input values, always wrong;
    ``saturation``  the firmware sits at its extreme value for that element while the reference does not;
    ``overflow``    the reference lies outside the firmware type's range, or differs by a multiple of it (wrap);
    ``precision``   the reference needs more fractional bits than the firmware type has;
    ``rounding``    the values differ by exactly one LSB of the firmware type (a rounding mode: RND vs TRN);
    ``accumulator`` a multiple of a power of two above the LSB (an intermediate, e.g. accumulator, wraps);
    ``value``       none of these: a wrong weight, bias or operation in this layer.
    """
    r, f = ref[diff], fw[diff]
    n_diff = int(diff.sum())
    if is_table and layer_input is not None:
        inp = np.asarray(layer_input, np.float64).reshape(len(layer_input), -1)
        if inp.shape == diff.shape:
            bad_inputs = np.unique(inp[diff])
            always_wrong = all(bool(diff[inp == v].all()) for v in bad_inputs)
            if len(bad_inputs) <= _MAX_TABLE_ENTRIES and always_wrong:
                listed = ", ".join(f"{v:g}" for v in bad_inputs)
                entries = f"{len(bad_inputs)} table entr{'y' if len(bad_inputs) == 1 else 'ies'}"
                return "table", (f"every wrong output comes from input value(s) {listed}, and those inputs are "
                                 f"wrong every time: {entries} of this layer's lookup table differ "
                                 "(check the table's weights file / address width)")
    # saturation: firmware pinned at its own extreme value for that element across the events
    # pinned: the element's extreme over the events, reached by several events (one event proves nothing)
    col_max, col_min = fw.max(axis=0), fw.min(axis=0)
    pinned_max = (fw == col_max) & ((fw == col_max).sum(axis=0) >= 2)
    pinned_min = (fw == col_min) & ((fw == col_min).sum(axis=0) >= 2)
    at_edge = pinned_max[diff] | pinned_min[diff]
    if ftype is not None:
        at_edge |= ((f == ftype.max) | (f == ftype.min)) & (np.abs(r - f) > ftype.lsb)
    wraps_in_ref = np.sign(r) != np.sign(f)
    if at_edge.mean() >= _SATURATION_SHARE and n_diff > 0 and np.abs(r - f).max() > (ftype.lsb if ftype else 0):
        where = f"{ftype}'s range [{ftype.min:g}, {ftype.max:g}]" if ftype else "its range"
        extra = (" and the reference wrapped (opposite sign)" if wraps_in_ref.mean() > 0.5 else "")
        return "saturation", (f"the firmware holds its extreme value where the reference goes beyond it{extra}: "
                              f"it saturates (AP_SAT) at {where} while the model wraps or has a wider range; "
                              "look for events outside the range the model was calibrated on, and for a type "
                              "here or in the quantiser before it with AP_SAT")
    if ftype is not None:
        outside = (r > ftype.max) | (r < ftype.min)
        span = 2.0 ** ftype.integer
        multiple = np.abs(r - f) / span
        if outside.any() or np.all(multiple == np.round(multiple)):
            return "overflow", (f"the reference leaves {ftype}'s range [{ftype.min:g}, {ftype.max:g}] and the "
                                f"firmware wraps: this layer's type needs more integer bits (widest reference "
                                f"|value| {float(np.abs(r).max()):g})")
    if ftype is not None:
        need = _frac_bits_needed(r)
        if need > ftype.frac:
            wider = f"ap_fixed<{ftype.integer + need},{ftype.integer}>"
            return "precision", (f"the reference needs {need} fractional bits, {ftype} keeps {ftype.frac}: "
                                 f"this layer's type is too narrow (use {wider} or the precision the quantised "
                                 "model implies)")
        steps = np.abs(r - f) / ftype.lsb
        if np.all(steps == 1.0):
            return "rounding", (f"every difference is exactly one LSB ({ftype.lsb:g}) of {ftype}: a rounding mode "
                                "differs (AP_RND vs AP_TRN) in this layer or its quantiser")
        powers = np.abs(r - f)
        big = float(powers.min())
        if big > ftype.lsb and np.all(np.log2(powers) == np.round(np.log2(powers))):
            return "accumulator", (f"differences are powers of two ({big:g} and up) above the LSB: an intermediate "
                                   "(accumulator / product) type in this layer wraps")
    return "value", ("the values differ with no range, table, precision or rounding pattern: check this layer's "
                     "weights, biases and implementation")


# ---------------------------------------------------------------------------------------------------
# Reference: the quantised Keras model, layer by layer
# ---------------------------------------------------------------------------------------------------


@dataclass
class KerasValues:
    """Per-layer values of the quantised model (``values``: name -> (events, elements)).

    ``quantisers_of``: producer value name -> the input quantisers that read it (hls4ml fuses such a
    quantiser into its producer's output type when it is not a layer of its own); ``oq_of``: layer ->
    its output quantiser's name (the layer's value already includes it).
    """

    values: dict[str, np.ndarray]
    quantisers_of: dict[str, list[str]]
    oq_of: dict[str, str]

    def for_hls_layer(self, name: str, traced: set[str]) -> np.ndarray | None:
        """Reference for hls4ml layer ``name``, given the names of all traced hls4ml layers."""
        if name in self.oq_of and self.oq_of[name] in traced:
            return None  # hls4ml keeps the pre-quantiser value here; the quantiser is its own layer
        fused = [q for q in self.quantisers_of.get(name, []) if q not in traced]
        if len(fused) == 1:
            return self.values[fused[0]]  # the next layer's input quantiser, fused into this output type
        return self.values.get(name)


def keras_layer_values(model: Any, x: np.ndarray) -> KerasValues:
    """Every layer's value on events ``x``, keyed by the names hls4ml gives the corresponding firmware layers.

    ``<layer>``: the layer's output, or its output before a non-linear activation it carries;
    ``<layer>_<activation>``: its output after that activation; ``<quantiser>``
    (e.g. ``<layer>_iq``): the input quantiser's output. Arrays are (events, elements).
    """
    import keras
    from keras import ops

    layers = [ly for ly in model.layers if not isinstance(ly, keras.layers.InputLayer)]
    sub = keras.Model(model.inputs, [ly.output for ly in layers])
    result = KerasValues({}, {}, {})
    values = result.values
    outs = sub.predict(x, verbose=0, batch_size=4096)
    outs = outs if isinstance(outs, list) else [outs]
    input_names = [ly.name for ly in model.layers if isinstance(ly, keras.layers.InputLayer)]
    by_tensor: dict[int, tuple[str | None, np.ndarray]] = {
        id(t): (input_names[k] if k < len(input_names) else None, np.asarray(x)) for k, t in enumerate(model.inputs)}
    if input_names:
        result.values[input_names[0]] = np.asarray(x, np.float64).reshape(len(x), -1)

    def flat(a: Any) -> np.ndarray:
        a = np.asarray(ops.convert_to_numpy(a), np.float64)
        return a.reshape(len(a), -1)

    for ly, o in zip(layers, outs, strict=True):
        inputs = ly.input if isinstance(ly.input, list | tuple) else [ly.input]
        producers = [by_tensor.get(id(t)) for t in inputs]
        if getattr(ly, "enable_iq", False) and all(p is not None for p in producers):
            iqs = ly.iq if isinstance(getattr(ly, "iq", None), list | tuple) else [getattr(ly, "iq", None)]
            for q, p in zip(iqs, producers, strict=False):
                if q is not None and p is not None:
                    values[q.name] = flat(q(p[1], training=False))
                    if p[0] is not None:
                        result.quantisers_of.setdefault(p[0], []).append(q.name)
        activation = getattr(ly, "activation", None)
        act = getattr(activation, "__name__", "linear")
        splits = (activation is not None and act != "linear" and not isinstance(ly, keras.layers.Activation)
                  and len(producers) == 1 and producers[0] is not None)
        key = ly.name
        if splits:
            assert producers[0] is not None
            ly.activation = None  # the pre-activation value: the same call without its activation
            try:
                values[ly.name] = flat(ly(producers[0][1], training=False))
            finally:
                ly.activation = activation
            key = f"{ly.name}_{act}"
        values[key] = flat(o)
        if getattr(ly, "enable_oq", False) and getattr(ly, "oq", None) is not None:
            values[ly.oq.name] = values[key]
            result.oq_of[key] = ly.oq.name
        by_tensor[id(ly.output)] = (key, np.asarray(o))
    return result


# ---------------------------------------------------------------------------------------------------
# hls4ml: instrument the project's own sources with trace hooks
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HlsLayer:
    """One layer call in the project's top-level C++: its output variable, type name and size."""

    name: str
    function: str
    var: str
    type_name: str
    size: str
    end_line: int  # index of the last line of the call block (the hook goes after it)


_ARRAY_DECL = re.compile(r"^\s*([A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*\[([^\]]+)\]\s*;")
_CALL_WITH_NAME = re.compile(r"^\s*(nnet::\w+|\w+)\s*(?:<.*>)?\s*\((.*)\)\s*;\s*//\s*(\w+)\s*$")
_CALL = re.compile(r"^\s*(nnet::\w+|\w+)\s*(?:<.*>)?\s*\((.*)\)\s*;")
_BLOCK_NAME = re.compile(r"^\s*//\s*(\w+)\s*$")


def _top_signature(cpp: str, project: str) -> tuple[list[tuple[str, str, str]], int]:
    """(type, name, size) of the top function's parameters and the index of its body's first line."""
    m = re.search(rf"void\s+{re.escape(project)}\s*\((.*?)\)\s*\{{", cpp, re.S)
    if m is None:
        raise ToolError(f"cannot find the top function {project}() in the project's C++")
    params = []
    for p in m.group(1).split(","):
        pm = re.match(r"\s*([A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*\[([^\]]+)\]\s*$", p)
        if pm is None:
            raise ToolError(f"cannot read parameter {p.strip()!r} of {project}() (io_parallel arrays expected)")
        params.append(pm.groups())
    return params, cpp[: m.end()].count("\n")


def hls_layers(cpp: str, project: str) -> tuple[list[HlsLayer], list[tuple[str, str, str]]]:
    """The layer calls of an hls4ml io_parallel top function, in dataflow order, and its parameters."""
    params, body = _top_signature(cpp, project)
    lines = cpp.splitlines()
    declared = {name: (t, size) for t, name, size in params}
    produced = {params[0][1]} if params else set()
    layers: list[HlsLayer] = []
    i = body
    while i < len(lines):
        line = lines[i]
        if (d := _ARRAY_DECL.match(line)) and not line.strip().startswith("return"):
            declared[d.group(2)] = (d.group(1), d.group(3).strip())
            i += 1
            continue
        calls: list[tuple[str, str]] = []
        name = None
        end = i
        if (c := _CALL_WITH_NAME.match(line)) is not None:
            calls, name = [(c.group(1), c.group(2))], c.group(3)
        elif (b := _BLOCK_NAME.match(line)) is not None and i + 1 < len(lines) and _CALL.match(lines[i + 1]):
            name, j = b.group(1), i + 1
            while j < len(lines) and (cm := _CALL.match(lines[j])) is not None:
                calls.append((cm.group(1), cm.group(2)))
                end = j
                j += 1
        if name is None:
            i += 1
            continue
        args = [a.strip() for _, a in calls for a in a.split(",")]
        outs = [a for a in args if a in declared and a not in produced]
        if outs:
            var = outs[0]
            produced.update(outs)
            layers.append(HlsLayer(name, calls[0][0], var, declared[var][0], declared[var][1], end))
        i = end + 1
    return layers, params


def instrument(cpp: str, bridge: str, layers: Sequence[HlsLayer]) -> tuple[str, str]:
    """The project's top-level C++ and bridge with hls4ml's trace hooks added for ``layers``.

    A layer whose ``end_line`` is -1 is the top function's input: its hook goes first in the body."""
    lines = cpp.splitlines()
    for ly in sorted(layers, key=lambda item: item.end_line, reverse=True):
        hook = ["#ifndef __SYNTHESIS__",
                f'    nnet::save_layer_output<{ly.type_name}>({ly.var}, "{ly.name}", {ly.size});',
                "#endif"]
        lines[ly.end_line + 1:ly.end_line + 1] = hook
    anchor = "nnet::trace_type_size = element_size;"
    if anchor not in bridge:
        raise ToolError("the project's bridge has no trace storage (hls4ml < 0.8?): cannot trace its layers")
    inserts = "".join(f'\n    nnet::trace_outputs->insert(std::pair<std::string, void *>("{ly.name}", '
                      f"(void *) malloc({ly.size} * element_size)));" for ly in layers)
    return "\n".join(lines) + "\n", bridge.replace(anchor, anchor + inserts, 1)


def parse_typedefs(defines_h: str) -> dict[str, FixedType]:
    """``typedef ap_fixed<...> name;`` lines of ``defines.h``."""
    out: dict[str, FixedType] = {}
    for m in re.finditer(r"typedef\s+(ap_u?fixed\s*<[^>]*>|ap_u?int\s*<[^>]*>)\s+(\w+)\s*;", defines_h):
        t = FixedType.parse(m.group(1))
        if t is not None:
            out[m.group(2)] = t
    return out


def _hls_project_name(fw_dir: Path) -> str:
    cfg_file = fw_dir / "hls4ml_config.yml"
    if cfg_file.is_file():
        m = re.search(r"^ProjectName:\s*(\S+)", cfg_file.read_text(), re.M)
        if m:
            return m.group(1)
    candidates = sorted(fw_dir.glob("*_bridge.cpp"))
    if not candidates:
        raise ToolError(f"{fw_dir}: no hls4ml project (no hls4ml_config.yml or *_bridge.cpp)")
    return candidates[0].name.removesuffix("_bridge.cpp")


def _sources_digest(fw_dir: Path) -> str:
    """SHA-256 over the project's files (names and contents), compiled artefacts excluded."""
    h = hashlib.sha256()
    for f in sorted(p for p in fw_dir.rglob("*") if p.is_file() and p.suffix not in (".so", ".o")
                    and "tb_data" not in p.relative_to(fw_dir).parts):
        h.update(str(f.relative_to(fw_dir)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def trace_hls4ml(fw_dir: Path, x: np.ndarray, cache: Path) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                                    list[HlsLayer], dict[str, FixedType]]:
    """Compile the project's sources with trace hooks under ``cache`` and run ``x`` through them.

    The instrumented build is kept in ``cache/<digest of the sources>/`` and reused while the project's
    files are unchanged (any edit changes the digest and rebuilds). Returns the outputs (events, n_out),
    each layer's values (events, elements), the layers and the project's typedefs. Raises ``ToolError``
    when the project cannot be instrumented or compiled.
    """
    project = _hls_project_name(fw_dir)
    cpp_path = fw_dir / "firmware" / f"{project}.cpp"
    if not cpp_path.is_file():
        raise ToolError(f"{cpp_path} is missing: not a complete hls4ml project")
    cpp = cpp_path.read_text()
    if "hls::stream" in cpp:
        raise ToolError("the project is io_stream; diagnose instruments io_parallel projects only")
    layers, params = hls_layers(cpp, project)
    if len(params) != 2:
        raise ToolError(f"{project}() has {len(params)} parameters; diagnose handles one input and one output")
    if not layers:
        raise ToolError(f"no layer calls found in {cpp_path.name}")
    # the input as the firmware holds it (the bridge's conversion into the input type) comes first
    body = _top_signature(cpp, project)[1]
    marker = next((k for k, ln in enumerate(cpp.splitlines()) if "insert layers" in ln), body)
    layers = [HlsLayer(params[0][1], "input", params[0][1], params[0][0], params[0][2], marker), *layers]
    work = cache / _sources_digest(fw_dir)[:16]
    copy = work / "firmware"
    libs = sorted((copy / "firmware").glob(f"{project}-*.so"))
    if not (work / "complete").is_file() or not libs:
        shutil.rmtree(cache, ignore_errors=True)  # one instrumented build per project, the current one
        shutil.copytree(fw_dir, copy, ignore=shutil.ignore_patterns("*.so", "*.o", "tb_data", "*.tar.gz"))
        bridge_path = copy / f"{project}_bridge.cpp"
        cpp_i, bridge_i = instrument(cpp, bridge_path.read_text(), layers)
        (copy / "firmware" / f"{project}.cpp").write_text(cpp_i)
        bridge_path.write_text(bridge_i)
        build = copy / "build_lib.sh"
        # -O0 instead of the script's -O3: the same sources and ap_fixed semantics, compiled several times faster
        build.write_text(re.sub(r'CFLAGS="-O\d', 'CFLAGS="-O0', build.read_text(), count=1))
        proc = subprocess.run(["bash", str(build)], cwd=copy, capture_output=True, text=True)
        log = cache / "build_lib.log"
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[-200:])
            raise ToolError(f"the traced copy of {fw_dir} did not compile: {first[:200]} (log: {log})")
        libs = sorted((copy / "firmware").glob(f"{project}-*.so"))
        if not libs:
            raise ToolError(f"build_lib.sh produced no {project}-*.so in {copy / 'firmware'} (log: {log})")
        (work / "complete").write_text("instrumented build of the sources with this digest\n")
    typedefs = parse_typedefs((copy / "firmware" / "defines.h").read_text())
    outputs, traces = _run_traced(libs[-1], project, x, layers, _size_of(params[1][2]), copy / "firmware")
    return outputs, traces, layers, typedefs


def _size_of(expr: str) -> int:
    try:
        return int(expr)
    except ValueError:
        raise ToolError(f"array size {expr!r} is not a number; diagnose needs hls4ml's numeric sizes") from None


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


def _run_traced(lib_path: Path, project: str, x: np.ndarray, layers: Sequence[HlsLayer], n_out: int,
                cwd: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Call the traced library event by event (doubles: exact for types up to 53 bits)."""
    lib = ctypes.CDLL(str(lib_path))
    top = getattr(lib, f"{project}_double")
    ptr = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
    top.argtypes, top.restype = [ptr, ptr], None
    lib.allocate_trace_storage.argtypes, lib.allocate_trace_storage.restype = [ctypes.c_size_t], None
    lib.collect_trace_output.argtypes = [ctypes.POINTER(_TraceData)]
    lib.collect_trace_output.restype = None
    lib.free_trace_storage.argtypes, lib.free_trace_storage.restype = [], None
    sizes = {ly.name: _size_of(ly.size) for ly in layers}
    traces = {name: np.empty((len(x), size)) for name, size in sizes.items()}
    outputs = np.empty((len(x), n_out))
    buf = (_TraceData * len(layers))()
    old = os.getcwd()
    os.chdir(cwd)  # weights are read relative to the library's folder in C simulation
    try:
        lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
        for i, row in enumerate(np.ascontiguousarray(x, np.float64)):
            out = np.zeros(n_out)
            top(np.ascontiguousarray(row), out)
            outputs[i] = out
            lib.collect_trace_output(buf)
            for item in buf:
                name = item.name.decode()
                data = ctypes.cast(item.data, ctypes.POINTER(ctypes.c_double))
                traces[name][i] = np.ctypeslib.as_array(data, shape=(sizes[name],))
        lib.free_trace_storage()
    finally:
        os.chdir(old)
    return outputs, traces


_TABLE_FUNCTIONS = ("unary_lut", "softmax", "sigmoid", "tanh", "lookup", "table")


def _load_keras(project_dir: Path) -> Any:
    path = project_dir / "model" / "model.keras"
    if not path.is_file():
        raise FastmlError(f"{project_dir}: no model/model.keras (the quantised model this project was built from)")
    from .keras_backend import ensure_backend

    ensure_backend()
    import hgq  # noqa: F401  (registers the HGQ2 layers for loading)
    import keras

    return keras.models.load_model(path, compile=False)


def _first_divergence(diag: Diagnosis) -> None:
    """The first diverging layer; if the layer feeding it was trimmed (equal only on its own coarser grid),
    that trimming is the cause: the consumer needed the LSBs its type dropped."""
    i = next((k for k, ly in enumerate(diag.layers) if ly.status == "diverges"), None)
    if i is None:
        return
    first = diag.layers[i]
    prev = diag.layers[i - 1] if i > 0 else None
    if prev is not None and prev.status == "trimmed" and first.cause in ("rounding", "precision", "value"):
        ftype = FixedType.parse(prev.precision or "")
        frac = f" ({ftype.frac} fractional bits)" if ftype else ""
        diag.first_divergent_layer, diag.cause = prev.name, "precision"
        diag.hint = (f"{prev.name} stores {prev.precision}{frac}, dropping LSBs the model keeps; {first.name}, "
                     f"which reads it, then differs in {first.mismatched_elements} elements: give {prev.name}'s type "
                     "more fractional bits (the precision the quantised model implies)")
        return
    diag.first_divergent_layer, diag.cause, diag.hint = first.name, first.cause, first.hint


def _diagnose_hls4ml(project_dir: Path, x: np.ndarray, diag: Diagnosis) -> None:
    model = _load_keras(project_dir)
    x32 = np.asarray(x, np.float32)  # the build's C-simulation and reference both ran on float32 events
    ref = keras_layer_values(model, x32)
    y_ref = np.asarray(model.predict(x32, verbose=0, batch_size=4096), np.float64).reshape(len(x), -1)
    try:
        y_fw, traces, layers, typedefs = trace_hls4ml(project_dir / "firmware", x32.astype(np.float64),
                                                      project_dir / TRACE_CACHE)
    except ToolError as err:
        diag.not_run = str(err)
        return
    prev: np.ndarray | None = None
    traced = {ly.name for ly in layers}
    for ly in layers:
        is_table = any(k in ly.function.lower() for k in _TABLE_FUNCTIONS)
        diag.layers.append(compare_layer(ly.name, ly.function, ref.for_hls_layer(ly.name, traced), traces[ly.name],
                                         typedefs.get(ly.type_name), prev, is_table))
        prev = traces[ly.name]
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)
    missing = [ly.name for ly in diag.layers if ly.status == "no reference"]
    if missing:
        diag.notes.append(f"no Keras value to compare for {', '.join(missing)} (hls4ml-only layers)")
    _first_divergence(diag)


# ---------------------------------------------------------------------------------------------------
# rtl: da4ml's per-operation interpreter, per Keras layer
# ---------------------------------------------------------------------------------------------------


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


def _diagnose_rtl(project_dir: Path, x: np.ndarray, diag: Diagnosis) -> None:
    from da4ml.converter import trace_model
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace

    model = _load_keras(project_dir)
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
    offset = 0
    for layer, size in zip(names, sizes, strict=True):
        fw = values[:, offset:offset + size]
        offset += size
        act = getattr(layer, "activation", None)
        act_name = getattr(act, "__name__", "linear")
        key = f"{layer.name}_{act_name}" if f"{layer.name}_{act_name}" in ref.values else layer.name
        diag.layers.append(compare_layer(layer.name, layer.__class__.__name__, ref.values.get(key), fw))
    y_ref = np.asarray(model.predict(x32, verbose=0, batch_size=4096), np.float64).reshape(len(x), -1)
    saved = _load_saved_logic(project_dir / "firmware")
    if saved is None:
        diag.notes.append(f"{NOT_RUN}: no firmware/model/pipeline.json or comb.json, the saved logic is unchecked")
        _first_divergence(diag)
        return
    y_fw = _run_logic(saved, x32.astype(np.float64))
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)
    _first_divergence(diag)
    if diag.output_mismatches and diag.first_divergent_layer is None:
        from .estimate import pipeline, trace_keras

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


# ---------------------------------------------------------------------------------------------------
# conifer: output only
# ---------------------------------------------------------------------------------------------------


def _diagnose_conifer(project_dir: Path, x: np.ndarray, y_saved: np.ndarray, diag: Diagnosis) -> None:
    diag.not_run = ("conifer 1.11's emulations return only the summed scores (decision_function(trees=True) is "
                    "ignored by its cpp and xilinxhls writers), so per-tree values cannot be compared")
    diag.reference = "fixed-point reference (saved y_ref)"


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------


def _backend_of(project_dir: Path) -> str:
    report = project_dir / "report.json"
    if report.is_file():
        try:
            return str(json.loads(report.read_text())["backend"])
        except (ValueError, KeyError, UnicodeDecodeError):
            pass
    fw = project_dir / "firmware"
    if (fw / "hls4ml_config.yml").is_file():
        return "hls4ml"
    if (fw / "metadata.json").is_file():
        return "rtl"
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
    if x.ndim != 2 or len(x) == 0:
        raise FastmlError(f"{path}: key 'x': expected a non-empty 2-D array (events, features), got shape {x.shape}")
    if events is not None:
        if events < 1:
            raise FastmlError(f"--events: expected a positive number of events, got {events}")
        x = x[:events]
    return x


def diagnose(project_dir: str | Path, events: int | None = DEFAULT_EVENTS, x: np.ndarray | None = None,
             inputs: str | Path | None = None, write: bool = True) -> Diagnosis:
    """Compare a built project's firmware with its quantised model layer by layer.

    ``x`` (or an ``inputs`` .npz with key ``x``) replaces the saved verification events; ``events``
    keeps the first N. Writes ``diagnosis.json`` into the project when ``write``. A backend that cannot
    expose per-layer values sets ``not_run`` with the reason; nothing is guessed.
    """
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise FastmlError(f"{project_dir}: expected a project folder (hls_projects/<name>/ or <name>.failed/)")
    backend = _backend_of(project_dir)
    if x is None:
        x = load_events(project_dir, events, Path(inputs) if inputs is not None else None)
    elif events is not None:
        x = np.asarray(x)[:events]
    firmware = {"hls4ml": "C simulation of the project's sources with per-layer trace hooks",
                "rtl": "da4ml per-operation interpreter (per layer) + the project's saved logic (output)",
                "conifer": "conifer emulation"}.get(backend, backend)
    diag = Diagnosis(project=project_dir.name, backend=backend, firmware=firmware, reference="quantized model",
                     events=len(x))
    if backend == "hls4ml":
        _diagnose_hls4ml(project_dir, x, diag)
    elif backend == "rtl":
        _diagnose_rtl(project_dir, x, diag)
    elif backend == "conifer":
        _diagnose_conifer(project_dir, x, np.empty(0), diag)
    else:
        diag.not_run = f"backend {backend!r} has no per-layer diagnosis"
    if write:
        diag.write(project_dir)
    return diag


__all__ = ["DIAGNOSIS_FILE", "Diagnosis", "FixedType", "LayerDiff", "classify", "compare_layer", "diagnose",
           "keras_layer_values"]
