"""Per-layer comparison of a firmware with its reference: the machinery every backend's diagnosis shares.

``FixedType`` reads the ``ap_fixed`` types firmware stores values in; ``compare_layer`` compares one layer's
values exactly and ``classify`` names the kind of difference; ``keras_layer_values`` gives the quantised
Keras model's value of every layer (the reference); ``Diagnosis`` collects the result and
``first_divergence`` picks the layer to blame. The backends' own tracing of their firmware lives with each
backend (``fastml.backends.<name>.diagnose``), the entry point in ``fastml.diagnose``.

Values are compared exactly; the worst element is described in the fixed-point type the firmware
stores it in (``ap_fixed<W,I>``: bits, integer bits, distance in LSBs of that type).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._internal.keras_backend import ensure_backend
from ..errors import FastmlError
from ..report import NOT_RUN

DIAGNOSIS_FILE = "diagnosis.json"
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


def load_keras(project_dir: Path) -> Any:
    path = project_dir / "model" / "model.keras"
    if not path.is_file():
        raise FastmlError(f"{project_dir}: no model/model.keras (the quantised model this project was built from)")
    ensure_backend()
    import hgq  # noqa: F401  (registers the HGQ2 layers for loading)
    import keras

    return keras.models.load_model(path, compile=False)


def first_divergence(diag: Diagnosis) -> None:
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
