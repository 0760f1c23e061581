"""The float edges of a published quantised model, made explicit: the fixed-point types fastml chooses for them.

A model published by someone else often quantises everything but its edges: the float input (QKeras,
QONNX zoo files without a ``Quant`` on the input), a float layer inside (a float ``Dense`` before the
softmax), a final softmax or sigmoid. No firmware computes floats, so fastml puts a fixed-point type on
each such edge (the recipe's ``model.input_precision`` / ``model.float_precision``, ``auto`` by default)
and builds the model *with exactly these quantisers* as the bit-exact reference. Each choice is recorded
(``FloatEdge``, in ``TrainedModel.selection["float_edges"]``) and the report lists it beside the float
model's accuracy, so the cost of every choice is visible.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError

#: The width ``auto`` gives an edge: hls4ml's default type (``ap_fixed<16,6>``) is 16 bits wide.
AUTO_WIDTH = 16
_TYPE = re.compile(r"^\s*(ap_)?(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*>\s*$")
TYPE_FORM = "'auto' or a fixed-point type such as 'ap_fixed<16,6>' or 'ufixed<8,3>' (<total bits, integer bits>)"

EdgeKind = Literal["input", "output activation", "float layer"]


@dataclass(frozen=True)
class FixedType:
    """A fixed-point type as HGQ2 counts it: sign bit ``k`` (0/1), integer bits ``i`` without the sign, fraction
    bits ``f``. Values outside the range saturate (``SAT``); rounding is to nearest (ties as the importer's
    arithmetic does them)."""

    k: int
    i: int
    f: int

    @property
    def width(self) -> int:
        return self.k + self.i + self.f

    def __str__(self) -> str:
        return f"ap_{'' if self.k else 'u'}fixed<{self.width},{self.i + self.k}>"

    @property
    def step(self) -> float:
        return 2.0 ** -self.f

    @property
    def range(self) -> tuple[float, float]:
        """Smallest and largest value the type holds."""
        hi = 2.0 ** self.i - self.step
        return (-(2.0 ** self.i) if self.k else 0.0), hi


def parse_fixed_type(text: str, key: str) -> FixedType:
    """``ap_fixed<W,I>`` / ``fixed<W,I>`` / ``ap_ufixed<W,I>`` / ``ufixed<W,I>`` (I counts the sign bit, as in
    Vitis HLS); one-line ``ConfigError`` naming ``key`` otherwise."""
    match = _TYPE.match(str(text))
    if not match:
        raise ConfigError(f"key {key!r}: expected {TYPE_FORM}, got {text!r}")
    signed = match.group(2) != "u"
    width, integer = int(match.group(3)), int(match.group(4))
    k = int(signed)
    if not k + 1 <= width <= 64:
        raise ConfigError(f"key {key!r}: {text!r} has {width} bits; expected {k + 1} to 64 (the sign needs one)")
    return FixedType(k, integer - k, width - integer)


def auto_fixed_type(values: np.ndarray, width: int = AUTO_WIDTH) -> FixedType:
    """The ``auto`` type for an edge whose values (on the training split) are ``values``: signed only if a value
    is negative, integer bits to hold the largest magnitude, the rest of ``width`` bits for the fraction."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    k = int(finite.size > 0 and float(finite.min()) < 0)
    peak = float(np.max(np.abs(finite))) if finite.size else 0.0
    i = math.floor(math.log2(peak)) + 1 if peak > 0 else 0
    i = min(i, width - k)  # never fewer than zero fraction bits
    return FixedType(k, i, width - k - i)


def resolve_precision(setting: str, values: np.ndarray, key: str) -> tuple[FixedType, str]:
    """The type for one edge from the recipe's ``setting`` (``auto`` or a type) and how it was chosen (for the
    report: ``auto: training range [lo, hi]`` or ``model.<key>``)."""
    if str(setting).strip().lower() == "auto":
        chosen = auto_fixed_type(values)
        finite = np.asarray(values, dtype=np.float64)
        finite = finite[np.isfinite(finite)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        return chosen, f"auto: training range [{lo:.4g}, {hi:.4g}]"
    return parse_fixed_type(setting, key), f"recipe {key}"


@dataclass(frozen=True)
class FloatEdge:
    """One choice fastml made at a float edge: where (layer or node), which edge, and what it did."""

    where: str
    edge: EdgeKind
    choice: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["AUTO_WIDTH", "FixedType", "FloatEdge", "auto_fixed_type", "parse_fixed_type", "resolve_precision"]
