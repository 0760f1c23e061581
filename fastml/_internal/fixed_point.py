"""``ap_fixed<W,I,Q,O>`` / ``ap_ufixed<W,I,Q,O>`` as integer codes: every quantisation and overflow mode of
Xilinx's ``ap_types`` except ``AP_WRAP_SM`` and saturation bits (``N``).

The bottom of fastml's fixed-point arithmetic: the recipe parses ``firmware.precision`` with it and the
conifer backend's reference evaluates trees with it. The defaults are ``AP_TRN`` (floor to the LSB) and
``AP_WRAP`` (keep the low W bits); models shipped by experiments also use e.g. ``AP_RND_CONV, AP_SAT``
(CMS's L1 HGCal multiclass BDT), so both the cast of a ``double`` and of a wider fixed-point value (a
product, a sum) go through the type's own modes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_AP_TYPE = re.compile(r"^\s*ap_(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*((?:,\s*\w+\s*)*)>\s*$")
#: Widest type the int64 reference handles exactly (products of two values need 2W + 1 bits).
MAX_WIDTH = 31
#: Quantisation modes: all round to the LSB; they differ in the direction (TRN*) or in how ties go (RND*).
ROUNDING_MODES = ("AP_TRN", "AP_TRN_ZERO", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_RND_CONV")
#: Overflow modes (``AP_WRAP_SM``, sign-magnitude wrapping, is not modelled).
OVERFLOW_MODES = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")
_FORM = "'ap_fixed<W,I>' or 'ap_ufixed<W,I>', optionally with a quantisation and an overflow mode " \
        "(e.g. 'ap_fixed<18,8>', 'ap_ufixed<9,9,AP_RND_CONV,AP_SAT>')"


@dataclass(frozen=True)
class APFixed:
    """``ap_fixed<width, integer, rounding, overflow>`` (``signed``) or ``ap_ufixed<...>`` (not ``signed``)."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be between 1 and {MAX_WIDTH}, got {self.width}")
        if not -self.width < self.integer <= self.width + 32:
            raise ValueError(f"integer bits must be in ({-self.width}, {self.width + 32}], got {self.integer}")
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(f"quantisation mode {self.rounding!r} is not one of {', '.join(ROUNDING_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow mode {self.overflow!r} is not one of {', '.join(OVERFLOW_MODES)}")

    @classmethod
    def parse(cls, text: str) -> APFixed:
        """``"ap_fixed<W,I>"`` -> ``APFixed(W, I)``; ``"ap_ufixed<W,I,Q,O>"`` with modes; else ``ValueError``."""
        m = _AP_TYPE.match(text)
        if not m:
            raise ValueError(f"expected {_FORM}, got {text!r}")
        modes = [p.strip() for p in m.group(4).split(",") if p.strip()]
        if len(modes) > 3 or (len(modes) == 3 and modes[2] != "0"):
            raise ValueError(f"saturation bits (a fifth parameter other than 0) are not supported, got {text!r}")
        rounding = modes[0] if modes else "AP_TRN"
        overflow = modes[1] if len(modes) > 1 else "AP_WRAP"
        try:
            return cls(int(m.group(2)), int(m.group(3)), signed=not m.group(1), rounding=rounding, overflow=overflow)
        except ValueError as err:
            raise ValueError(f"{err} in {text!r}") from None

    def __str__(self) -> str:
        name = "ap_fixed" if self.signed else "ap_ufixed"
        if (self.rounding, self.overflow) == ("AP_TRN", "AP_WRAP"):
            return f"{name}<{self.width},{self.integer}>"
        return f"{name}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    @property
    def default_modes(self) -> bool:
        """Signed, ``AP_TRN``, ``AP_WRAP``: the only form conifer's VHDL backend and the precision search use."""
        return self.signed and (self.rounding, self.overflow) == ("AP_TRN", "AP_WRAP")

    @property
    def frac(self) -> int:
        """Fractional bits: the value of an integer code ``k`` is ``k * 2**-frac``."""
        return self.width - self.integer

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def wrap(self, codes: np.ndarray) -> np.ndarray:
        """Keep the low ``width`` bits of integer codes (two's complement when signed)."""
        codes = np.asarray(codes, np.int64)
        mask = (np.int64(1) << self.width) - 1
        if not self.signed:
            return codes & mask
        half = np.int64(1) << (self.width - 1)
        return ((codes + half) & mask) - half

    def fit(self, codes: np.ndarray) -> np.ndarray:
        """Integer codes on this type's LSB grid, brought into range by the overflow mode."""
        codes = np.asarray(codes, np.int64)
        if self.overflow == "AP_WRAP":
            return self.wrap(codes)
        lo, hi = self.min_code, self.max_code
        if self.overflow == "AP_SAT_ZERO":
            return np.where((codes < lo) | (codes > hi), 0, codes)
        if self.overflow == "AP_SAT_SYM" and self.signed:
            lo = -hi
        return np.clip(codes, lo, hi)

    def _round_up(self, floor: np.ndarray, above_half: np.ndarray, at_half: np.ndarray, inexact: np.ndarray,
                  negative: np.ndarray) -> np.ndarray:
        """Whether to add one LSB to ``floor`` (value = floor + r, 0 <= r < 1 in LSBs), by the rounding mode."""
        mode = self.rounding
        if mode == "AP_TRN":
            return np.zeros_like(inexact)
        if mode == "AP_TRN_ZERO":
            return inexact & negative
        ties = {"AP_RND": np.ones_like(at_half), "AP_RND_ZERO": negative, "AP_RND_MIN_INF": np.zeros_like(at_half),
                "AP_RND_INF": ~negative, "AP_RND_CONV": (floor % 2) == 1}[mode]
        return above_half | (at_half & ties)

    def to_codes(self, x: Any) -> np.ndarray:
        """Integer codes of ``(ap_[u]fixed<...>) double(x)``: exact for any finite x, with this type's modes."""
        v = np.ldexp(np.asarray(x, np.float64), self.frac)
        fl = np.floor(v)
        r = v - fl  # exact: both are doubles of the same binade or finer
        fl = fl + self._round_up(fl, r > 0.5, r == 0.5, r > 0, v < 0)
        if self.overflow == "AP_WRAP":
            # fmod on doubles is exact, so this wraps even values far beyond the int64 range correctly.
            modulus = float(2**self.width)
            fl = np.mod(fl, modulus)
            if self.signed:
                fl = np.where(fl >= modulus / 2, fl - modulus, fl)
            return fl.astype(np.int64)
        lo, hi = float(self.min_code), float(self.max_code)
        if self.overflow == "AP_SAT_ZERO":
            return np.where((fl < lo) | (fl > hi), 0.0, fl).astype(np.int64)
        if self.overflow == "AP_SAT_SYM" and self.signed:
            lo = -hi
        return np.clip(fl, lo, hi).astype(np.int64)

    def from_codes(self, codes: np.ndarray, frac: int) -> np.ndarray:
        """Cast exact fixed-point values (integer ``codes`` with ``frac`` fractional bits) into this type."""
        codes = np.asarray(codes, np.int64)
        shift = frac - self.frac
        if shift <= 0:
            return self.fit(codes << -shift)
        fl = codes >> shift
        rem = codes - (fl << shift)
        half = np.int64(1) << (shift - 1)
        up = self._round_up(fl, rem > half, rem == half, rem > 0, codes < 0)
        return self.fit(fl + up.astype(np.int64))

    def to_float(self, codes: np.ndarray) -> np.ndarray:
        """Exact double value of integer codes."""
        return np.ldexp(np.asarray(codes, np.float64), -self.frac)

    def quantize(self, x: Any) -> np.ndarray:
        """``(double)(ap_[u]fixed<...>) x`` as float64."""
        return self.to_float(self.to_codes(x))


def floor_shift(codes: np.ndarray, shift: int) -> np.ndarray:
    """Divide integer codes by ``2**shift`` rounding towards minus infinity (a negative shift multiplies)."""
    return codes >> shift if shift >= 0 else codes << -shift
