"""Signed ``ap_fixed<W,I>`` with the default ``AP_TRN`` / ``AP_WRAP`` modes, as integer codes.

The bottom of fastml's fixed-point arithmetic: the recipe parses ``firmware.precision`` with it and the
conifer backend's reference evaluates trees with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_AP_FIXED = re.compile(r"^\s*ap_fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*>\s*$")
#: Widest type the int64 reference handles exactly (products of two values need 2W + 1 bits).
MAX_WIDTH = 31


@dataclass(frozen=True)
class APFixed:
    """A signed ``ap_fixed<width, integer>`` with conifer's default ``AP_TRN`` / ``AP_WRAP`` modes."""

    width: int
    integer: int

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise ValueError(f"width must be between 1 and {MAX_WIDTH}, got {self.width}")
        if not -self.width < self.integer <= self.width + 32:
            raise ValueError(f"integer bits must be in ({-self.width}, {self.width + 32}], got {self.integer}")

    @classmethod
    def parse(cls, text: str) -> APFixed:
        """``"ap_fixed<W,I>"`` -> ``APFixed(W, I)``; raises ``ValueError`` for anything else."""
        m = _AP_FIXED.match(text)
        if not m:
            raise ValueError(f"expected 'ap_fixed<W,I>' (e.g. 'ap_fixed<18,8>'), got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def __str__(self) -> str:
        return f"ap_fixed<{self.width},{self.integer}>"

    @property
    def frac(self) -> int:
        """Fractional bits: the value of an integer code ``k`` is ``k * 2**-frac``."""
        return self.width - self.integer

    def wrap(self, codes: np.ndarray) -> np.ndarray:
        """Keep the low ``width`` bits of integer codes, as a signed two's-complement number."""
        half = np.int64(1) << (self.width - 1)
        return ((np.asarray(codes, np.int64) + half) & ((half << 1) - 1)) - half

    def to_codes(self, x: Any) -> np.ndarray:
        """Integer codes of ``(ap_fixed<W,I>) double(x)``: floor to the LSB, then wrap (exact for any finite x)."""
        v = np.floor(np.ldexp(np.asarray(x, np.float64), self.frac))
        # fmod on doubles is exact, so this wraps even values far beyond the int64 range correctly.
        modulus = float(2**self.width)
        v = np.mod(v, modulus)
        v = np.where(v >= modulus / 2, v - modulus, v)
        return v.astype(np.int64)

    def to_float(self, codes: np.ndarray) -> np.ndarray:
        """Exact double value of integer codes."""
        return np.ldexp(np.asarray(codes, np.float64), -self.frac)

    def quantize(self, x: Any) -> np.ndarray:
        """``(double)(ap_fixed<W,I>) x`` as float64."""
        return self.to_float(self.to_codes(x))


def floor_shift(codes: np.ndarray, shift: int) -> np.ndarray:
    """Divide integer codes by ``2**shift`` rounding towards minus infinity (a negative shift multiplies)."""
    return codes >> shift if shift >= 0 else codes << -shift
