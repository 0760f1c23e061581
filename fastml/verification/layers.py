"""Per-layer comparison of a firmware with its reference: the machinery every backend's diagnosis shares.

``FixedType`` / ``StoredGrid`` read the grids firmware stores values on; ``compare_layer`` compares one layer's
values exactly and ``classify`` names the kind of difference; ``keras_layer_values`` gives the quantised
Keras model's value at every point of the graph (the reference); ``Diagnosis`` collects the result,
``first_divergence`` picks the layer to blame and ``check_consistency`` refuses to blame a firmware whose
outputs all match. The backends' tracing of their own firmware lives with each backend
(``fastml.backends.<name>.diagnose``), the entry point in ``fastml.diagnose``.

Values are compared exactly, on the grid the firmware stores (``StoredGrid``: the layer's ``ap_fixed``
type, or da4ml's per-element (k, i, f)): a layer equal only as stored is "trimmed" (hls4ml and da4ml keep
only the bits the consumers use). Where the consumer's own input quantiser reads a trimmed layer, the
trimming is proven harmless (or not) by applying that quantiser to what is stored
(``check_trimmed_readers``). The worst element is described in the fixed-point type the firmware stores it
in (``ap_fixed<W,I>``: bits, integer bits, distance in LSBs of that type). If every output matches but a
layer differs, the trace itself is at fault: the layer is named as inconsistent and nothing is blamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._internal.keras_backend import ensure_backend
from ..errors import FastmlError
from ..report import NOT_RUN

#: Name of the diagnosis written into the project folder.
DIAGNOSIS_FILE = "diagnosis.json"
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
    """One layer's comparison. ``status``: "match", "trimmed" (equal as the firmware's type stores the reference:
    hls4ml dropped LSBs, or MSBs where the consumer's quantiser wraps, that no consumer uses), "diverges",
    "inconsistent" (differs, but every output matches: diagnose's trace is at fault, see
    ``Diagnosis.inconsistent``), or "no reference" (nothing to compare with)."""

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
    dropped: list[str] | None = None  # for "trimmed": what the firmware's type dropped, "LSBs" and/or "MSBs"
    #: for "trimmed": the input quantisers reading this layer that give the model's values on what it stores,
    #: which proves the trimming harmless (``check_trimmed_readers``)
    proven_by: list[str] | None = None


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
    #: first layer that differs although every output matches: diagnose's own trace is at fault, not the firmware
    inconsistent: str | None = None

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
                differs = ly.status in ("diverges", "inconsistent")
                diff = f"{ly.mismatched_elements}/{ly.elements * ly.events}" if differs else ""
                ev = f"{ly.mismatched_events}/{ly.events}" if differs else ""
                w = ly.worst or {}
                stored = f" (stored {w['stored_reference']:g})" if "stored_reference" in w else ""
                worst = (f"event {w['event']} [{w['index']}]: ref {w['reference']:g}{stored} fw {w['firmware']:g} "
                         f"({w['lsb_distance']:g} LSB)" if w and w.get("lsb_distance") is not None else
                         f"event {w['event']} [{w['index']}]: ref {w['reference']:g} fw {w['firmware']:g}" if w else
                         f"drops {' and '.join(ly.dropped)}" + (f", same after {', '.join(ly.proven_by)}"
                                                                  if ly.proven_by else "") if ly.dropped else "")
                out.append(f"  {ly.name:<{width}}  {ly.status:<12}  {diff:>9}  {ev:>9}  "
                           f"{(ly.precision or ''):<{tw}}  {worst}".rstrip())
        if self.output_mismatches is not None:
            out.append(f"  output: {self.output_mismatches} of {self.output_elements} elements differ")
        if self.first_divergent_layer:
            out.append(f"  first divergent layer: {self.first_divergent_layer} ({self.cause})")
        elif self.inconsistent:
            out.append(f"  trace inconsistent at {self.inconsistent}: every output matches, so diagnose's own "
                       "comparison is at fault there; the firmware is not blamed")
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
        counts = [ly.mismatched_elements if ly.status in ("diverges", "inconsistent") else 0 for ly in self.layers]
        colors = ["tab:red" if ly.name == self.first_divergent_layer else
                  "tab:orange" if ly.status == "diverges" else "tab:purple" if ly.status == "inconsistent" else
                  "tab:blue" if ly.status == "trimmed" else "tab:gray" for ly in self.layers]
        ax.bar(range(len(names)), [max(c, 0) for c in counts], color=colors)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("differing elements")
        if any(counts):
            ax.set_yscale("symlog", linthresh=1)
        title = (f"first divergence: {self.first_divergent_layer} ({self.cause})" if self.first_divergent_layer
                 else f"trace inconsistent at {self.inconsistent} (outputs match)" if self.inconsistent
                 else "no divergence at any layer" if not self.not_run else f"{NOT_RUN}: {self.not_run}")
        ax.set_title(title, fontsize=9)
        return ax


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


def _round(v: np.ndarray, mode: str) -> np.ndarray:
    """``v`` (in LSBs) rounded to an integer as ``ap_fixed`` rounding mode ``mode`` does."""
    return {"AP_TRN": np.floor(v), "AP_TRN_ZERO": np.trunc(v), "AP_RND": np.floor(v + 0.5),
            "AP_RND_CONV": np.round(v), "AP_RND_MIN_INF": np.ceil(v - 0.5),
            "AP_RND_ZERO": np.sign(v) * np.ceil(np.abs(v) - 0.5),
            "AP_RND_INF": np.sign(v) * np.floor(np.abs(v) + 0.5)}.get(mode.upper(), np.floor(v))


def to_grid(values: np.ndarray, ftype: FixedType) -> np.ndarray:
    """``values`` on ``ftype``'s LSB grid with its rounding mode, range untouched (no overflow handling)."""
    return np.ldexp(_round(np.ldexp(np.asarray(values, np.float64), ftype.frac), ftype.rounding), -ftype.frac)


@dataclass(frozen=True)
class StoredGrid:
    """The grid a firmware stores a layer's values on: LSB ``2**-frac``, range [``low``, ``high``], rounding and
    overflow modes. Uniform (one ``ap_fixed`` type: ``of_type``) or per element (arrays broadcasting against
    the values, e.g. da4ml's per-element (k, i, f): ``of_kif``)."""

    frac: Any
    low: Any
    high: Any
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"
    signed: Any = True

    @classmethod
    def of_type(cls, ftype: FixedType) -> StoredGrid:
        return cls(ftype.frac, ftype.min, ftype.max, ftype.rounding, ftype.overflow, ftype.signed)

    @classmethod
    def of_kif(cls, k: np.ndarray, i: np.ndarray, f: np.ndarray) -> StoredGrid:
        """da4ml's (sign bit, integer bits without it, fractional bits) per element; a value enters its logic
        truncated and wrapped (the low bits of an input are what the hardware takes)."""
        k, i, f = (np.asarray(a, np.int64) for a in (k, i, f))
        return cls(f, -k * np.ldexp(1.0, i), np.ldexp(1.0, i) - np.ldexp(1.0, -f), "AP_TRN", "AP_WRAP", k != 0)

    @property
    def lsb(self) -> Any:
        return np.ldexp(1.0, -np.asarray(self.frac))

    def on_grid(self, values: np.ndarray) -> np.ndarray:
        """``values`` rounded to the LSB grid, range untouched."""
        frac = np.asarray(self.frac)
        return np.ldexp(_round(np.ldexp(np.asarray(values, np.float64), frac), self.rounding), -frac)

    def align(self, values: np.ndarray) -> np.ndarray:
        """``values`` as stored: rounded to the grid, then brought into range with the overflow mode
        (``AP_WRAP``: modulo the range's span, the ``AP_SAT`` family: clipped, ``AP_SAT_ZERO``: zero), as an
        ``ap_fixed`` assignment does."""
        grid = self.on_grid(values)
        outside = (grid < self.low) | (grid > self.high)
        if not outside.any():
            return grid
        mode = self.overflow.upper()
        if mode == "AP_WRAP":
            span = self.high - self.low + self.lsb  # 2**I values of one LSB each (sign bit included)
            return np.where(outside, np.mod(grid - self.low, span) + self.low, grid)
        if mode == "AP_SAT_ZERO":
            return np.where(outside, 0.0, grid)
        low = np.where(self.signed, -self.high, self.low) if mode == "AP_SAT_SYM" else self.low
        return np.clip(grid, low, self.high)

    def dropped(self, values: np.ndarray) -> list[str]:
        """What storing ``values`` drops: "LSBs" (finer than the grid), "MSBs" (beyond the range)."""
        grid = self.on_grid(values)
        dropped = ["LSBs"] if not np.array_equal(grid, np.asarray(values, np.float64)) else []
        if ((grid < self.low) | (grid > self.high)).any():
            dropped.append("MSBs")
        return dropped


def align_to_type(values: np.ndarray, ftype: FixedType) -> np.ndarray:
    """``values`` as the firmware stores them in ``ftype`` (rounding, then overflow, as an ``ap_fixed``
    assignment does).

    This is the reference "on the grid the firmware actually stores": hls4ml's bit-exact pass gives a layer's
    output only the bits its consumers use (fewer LSBs; fewer MSBs where the consumer's quantiser wraps anyway,
    e.g. the per-element input quantiser that the DA strategy applies inside the next kernel), so a correct
    firmware holds exactly this, and anything else it holds is a difference.
    """
    return StoredGrid.of_type(ftype).align(values)


# ---------------------------------------------------------------------------------------------------
# Comparison and classification
# ---------------------------------------------------------------------------------------------------


def compare_layer(name: str, operation: str, ref: np.ndarray | None, fw: np.ndarray,
                  ftype: FixedType | None = None, layer_input: np.ndarray | None = None,
                  is_table: bool = False, grid: StoredGrid | None = None) -> LayerDiff:
    """Compare one layer's firmware values ``fw`` (events, elements) with ``ref`` exactly and classify.

    ``ref`` is the model's value at the point of the graph the firmware stores; with ``ftype`` (the type the
    firmware stores it in), or ``grid`` where that is per element, it is compared as the firmware holds it
    (``StoredGrid.align``): "match" if equal as is, "trimmed" if equal only as stored (``dropped`` says whether
    LSBs, MSBs or both went), else "diverges", counting the elements that differ as stored.
    """
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
    if np.array_equal(ref, fw):
        ly.status = "match"
        return ly
    # compared on the grid the firmware stores: the reference as this layer's type holds it (hls4ml's
    # bit-exact pass keeps only the bits the consumers use); a difference there is a real one
    grid = grid if grid is not None else StoredGrid.of_type(ftype) if ftype is not None else None
    aligned = grid.align(ref) if grid is not None else ref
    diff = aligned != fw
    if not diff.any():
        ly.status = "trimmed"
        ly.dropped = grid.dropped(ref) if grid is not None else None
        return ly
    ly.mismatched_elements = int(diff.sum())
    ly.mismatched_events = int(diff.any(axis=1).sum())
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
    if grid is not None and aligned[event, index] != ref[event, index]:
        worst["stored_reference"] = float(aligned[event, index])  # the reference as ftype holds it
    ly.worst = worst
    ly.cause, ly.hint = classify(ref, fw, diff, ftype, layer_input, is_table)
    return ly


#: A reader of a layer's output: (name of its input quantiser, that quantiser applied to other values -- None
#: where it cannot be applied exactly --, the quantiser's output in the model).
Reader = tuple[str, Callable[[np.ndarray], "np.ndarray | None"], np.ndarray]


def check_trimmed_readers(ly: LayerDiff, ref: np.ndarray, grid: StoredGrid | FixedType,
                          readers: Sequence[Reader]) -> None:
    """Whether a "trimmed" layer's trimming is harmless to the layers that read it through input quantisers.

    Used where the firmware applies the reader's quantiser itself after this layer (hls4ml's DA kernels
    quantise their inputs per element; da4ml's trace applies every layer's): the trimming is provably harmless
    iff every reader's quantiser gives the model's output on the values this layer stores (``grid``: a type,
    or per element). Then ``ly.proven_by`` names them; otherwise the layer diverges here: what it stores drops
    LSBs ("precision") or MSBs ("overflow") that a reader keeps.
    """
    grid = StoredGrid.of_type(grid) if isinstance(grid, FixedType) else grid
    r = np.asarray(ref, np.float64).reshape(len(ref), -1)
    stored = grid.align(r)
    proven = []
    for name, quantise, model_out in readers:
        got = quantise(stored)
        if got is None or got.shape != stored.shape:
            return  # not provable here: stays "trimmed", judged by what its consumer does (_first_divergence)
        bad = got != model_out
        if not bad.any():
            proven.append(name)
            continue
        lsb = np.broadcast_to(grid.lsb, r.shape)
        out_of_range = bool((np.abs(r - stored)[bad] >= lsb[bad]).any())  # more than rounding: wrapped or clipped
        event, index = (int(i) for i in np.argwhere(bad)[0])
        ly.status, ly.proven_by = "diverges", None
        ly.mismatched_elements, ly.mismatched_events = int(bad.sum()), int(bad.any(axis=1).sum())
        distance = float(abs(r - stored)[event, index])
        ly.worst = {"event": event, "index": index, "reference": float(r[event, index]),
                    "firmware": float(stored[event, index]), "abs_difference": distance,
                    "lsb": float(lsb[event, index]), "lsb_distance": distance / float(lsb[event, index]),
                    "reader": name, "reader_reference": float(model_out[event, index]),
                    "reader_firmware": float(got[event, index])}
        what = "MSBs (its range is too small)" if out_of_range else "LSBs (it has too few fractional bits)"
        ly.cause = "overflow" if out_of_range else "precision"
        ly.hint = (f"{ly.name} stores {ly.precision or 'its values'}, dropping {what} that {name}, the quantiser "
                   f"reading it, keeps: {ly.mismatched_elements} elements reach it changed; give {ly.name} more "
                   f"{'integer' if out_of_range else 'fractional'} bits (the precision the quantised model implies)")
        return
    if proven:
        ly.proven_by = proven


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

    ``quantisers_of``: producer value name -> the input quantisers that read it; ``reader_of``: such a
    quantiser -> the layer it is the input quantiser of; ``oq_of``: layer -> its output quantiser's name
    (the layer's value already includes it).
    """

    values: dict[str, np.ndarray]
    quantisers_of: dict[str, list[str]]
    oq_of: dict[str, str]
    reader_of: dict[str, str] = field(default_factory=dict)
    #: input quantiser -> (the quantiser, the shape of one event's input): to apply it to other values
    quantisers: dict[str, tuple[Any, tuple[int, ...]]] = field(default_factory=dict)

    def kernel_readers(self, name: str, quantised_in_kernel: Collection[str]) -> list[Reader]:
        """The input quantisers that the firmware applies to ``name``'s output inside their own layer's kernel
        (``quantised_in_kernel``), as ``check_trimmed_readers`` takes them."""
        return [(q, lambda v, q=q: self.quantise(q, v), self.values[q]) for q in self.quantisers_of.get(name, [])
                if self.reader_of.get(q) in quantised_in_kernel and q in self.quantisers]

    def quantise(self, name: str, values: np.ndarray) -> np.ndarray | None:
        """Input quantiser ``name`` applied to ``values`` (events, elements) as the model applies it (float32,
        inference); None if the values are not exact in float32 (the model's own arithmetic)."""
        q, shape = self.quantisers[name]
        v32 = np.asarray(values, np.float32)
        if not np.array_equal(v32, values):
            return None
        from keras import ops

        out = q(v32.reshape(len(v32), *shape), training=False)
        return np.asarray(ops.convert_to_numpy(out), np.float64).reshape(len(v32), -1)

    def for_hls_layer(self, name: str, traced: set[str],
                      quantised_in_kernel: Collection[str] = ()) -> np.ndarray | None:
        """Reference for hls4ml layer ``name``: the model's value at the point of the graph the firmware stores.

        ``traced``: the names of all traced hls4ml layers; ``quantised_in_kernel``: those whose kernel applies
        their input quantiser itself (``fused_input_quantisers``). Where a consumer's input quantiser goes
        decides what ``name``'s output array holds (hls4ml 1.3):

        - a layer of its own (``FixedPointQuantizer``, traced): ``name`` holds its own value, before it;
        - inside the consumer's DA kernel (``FuseQuantizerIntoDALayers``, heterogeneous quantisers: per-element
          widths, pruned elements, negative fractional bits): ``name`` holds its own value, before it;
        - fused into ``name``'s output type (``FuseFixedPointQuantizer``, uniform quantisers): ``name`` holds
          the quantiser's output.
        """
        if name in self.oq_of and self.oq_of[name] in traced:
            return None  # hls4ml keeps the pre-quantiser value here; the quantiser is its own layer
        fused = [q for q in self.quantisers_of.get(name, [])
                 if q not in traced and self.reader_of.get(q) not in quantised_in_kernel]
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
            iq = getattr(ly, "iq", None)
            # a layer of several inputs (QAdd, QEinsum, ...) has one quantiser per input: a tuple, or hgq's
            # MultipleQuantizers (iterable, but called on all inputs at once)
            iqs = list(iq) if iq is not None and len(producers) > 1 and hasattr(iq, "__iter__") else [iq]
            for q, p in zip(iqs, producers, strict=False):
                if q is not None and p is not None:
                    try:
                        quantised = q(p[1], training=False)
                    except ValueError:
                        # a quantiser of a transformed input (hgq's QDenseT broadcasts (B, n) to (B, n, m) first):
                        # it reads no tensor of the graph as is, so there is no value of its own to name
                        continue
                    if tuple(np.shape(quantised)) != tuple(np.shape(p[1])):
                        continue  # likewise: it broadcast the tensor into another shape
                    values[q.name] = flat(quantised)
                    result.reader_of[q.name] = ly.name
                    result.quantisers[q.name] = (q, tuple(np.shape(p[1])[1:]))
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
    """The first diverging layer; if the layer feeding it was trimmed (equal only as its own type stores the
    model's value), that trimming is the cause: the consumer needed the LSBs (precision) or MSBs (overflow)
    its type dropped."""
    i = next((k for k, ly in enumerate(diag.layers) if ly.status == "diverges"), None)
    if i is None:
        return
    first = diag.layers[i]
    prev = diag.layers[i - 1] if i > 0 else None
    # a trimming proven harmless to its reader's quantiser (check_trimmed_readers) is never the cause
    dropped = ((prev.dropped or []) if prev is not None and prev.status == "trimmed" and not prev.proven_by
               else [])
    range_cause = first.cause in ("overflow", "saturation", "accumulator") or (
        first.cause == "value" and "LSBs" not in dropped)
    if prev is not None and "MSBs" in dropped and range_cause:
        ftype = FixedType.parse(prev.precision or "")
        span = f" (range [{ftype.min:g}, {ftype.max:g}])" if ftype else ""
        diag.first_divergent_layer, diag.cause = prev.name, "overflow"
        diag.hint = (f"{prev.name} stores {prev.precision}{span}, dropping MSBs of values the model keeps; "
                     f"{first.name}, which reads it, then differs in {first.mismatched_elements} elements: give "
                     f"{prev.name}'s type more integer bits (the range the quantised model implies)")
        return
    if prev is not None and "LSBs" in dropped and first.cause in ("rounding", "precision", "value"):
        ftype = FixedType.parse(prev.precision or "")
        frac = f" ({ftype.frac} fractional bits)" if ftype else ""
        diag.first_divergent_layer, diag.cause = prev.name, "precision"
        diag.hint = (f"{prev.name} stores {prev.precision}{frac}, dropping LSBs the model keeps; {first.name}, "
                     f"which reads it, then differs in {first.mismatched_elements} elements: give {prev.name}'s type "
                     "more fractional bits (the precision the quantised model implies)")
        return
    diag.first_divergent_layer, diag.cause, diag.hint = first.name, first.cause, first.hint


def check_consistency(diag: Diagnosis) -> None:
    """Self-consistency guard: when the firmware's outputs equal the model's on every event, a layer that
    "diverges" means this trace compared it at the wrong point or on the wrong grid. Say so, naming the layer,
    and blame nothing: a trace that contradicts the outputs cannot name a cause."""
    if diag.output_mismatches != 0:  # outputs differ (a real divergence) or were not compared (nothing to check)
        return
    odd = [ly for ly in diag.layers if ly.status == "diverges"]
    if not odd:
        return
    for ly in odd:
        ly.status = "inconsistent"
    diag.inconsistent = odd[0].name
    diag.first_divergent_layer = diag.cause = diag.hint = None
    diag.notes.append(
        f"diagnose's own trace is inconsistent at {odd[0].name}: it differs from the model in "
        f"{odd[0].mismatched_elements} elements, yet all {diag.output_elements} outputs match; the firmware is not "
        "blamed (the comparison is at fault: please report it with diagnosis.json)")


