"""da4ml as fastml uses it: trace an HGQ2 Keras model, pipeline it for a clock, and read its cost model.

Shared by the ``rtl`` backend (which writes the pipeline as Verilog/VHDL) and the ``hls4ml`` backend (whose
``da4ml_estimate`` describes the same network built as da4ml RTL).

Latency cutoff vs clock. da4ml measures delay in "adder units": with ``HWConfig(1, -1, -1)`` (what
fastml traces with) every adder / carry chain counts 1 whatever its width, and a lookup table
``max(bits_in - 6, 1)``. ``RTLModel`` cuts a new pipeline stage whenever ``latency_cutoff`` units
are exceeded. da4ml's own examples and CLI pair ``latency_cutoff=5`` with a 5 ns clock, i.e. about
one adder (carry chain + routing on UltraScale+) per ns, so when ``firmware.latency_cutoff`` is unset
fastml uses ``cutoff = clock_period_ns / NS_PER_DELAY_UNIT`` with ``NS_PER_DELAY_UNIT = 1.0``
(at least 1). The latency in ns is ``cycles * clock_period_ns`` (the register-to-register time).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FastmlError
from ..report import Latency, Resources

if TYPE_CHECKING:
    from ..recipe import BuildConfig, FirmwareConfig

#: Assumed delay of one da4ml delay unit (one adder) in ns; see the module docstring.
NS_PER_DELAY_UNIT = 1.0


def compiler_label() -> str:
    """``"da4ml <version>"``: what produced a figure, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"da4ml {version('da4ml')}"
    except PackageNotFoundError:
        return "da4ml"


def latency_cutoff_for(fw: FirmwareConfig) -> tuple[float, str]:
    """The da4ml latency cutoff (delay units per stage) to pipeline with, and where it came from."""
    if fw.latency_cutoff is not None:
        return float(fw.latency_cutoff), "firmware.latency_cutoff"
    cutoff = max(1.0, float(int(fw.clock_period_ns / NS_PER_DELAY_UNIT)))
    return cutoff, f"derived: clock_period_ns {fw.clock_period_ns:g} / {NS_PER_DELAY_UNIT:g} ns per da4ml delay unit"


def trace_keras(keras_model: Any) -> Any:
    """da4ml ``CombLogic`` of an HGQ2 Keras model (single input, single output); bit-exact with it.

    The model's quantiser ranges must already be calibrated (``hgq.utils.trace_minmax``), as
    ``fastml.models`` guarantees. Raises ``FastmlError`` if da4ml cannot trace a layer.
    """
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig, comb_trace

    why = untraceable_quantiser(keras_model)
    if why:
        raise FastmlError(f"da4ml cannot trace this model: {why}")
    try:
        inp, out = trace_model(keras_model, HWConfig(1, -1, -1))
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        msg = " ".join(str(err).split())
        if not msg:  # a bare assert inside da4ml: say where, "AssertionError" alone tells a user nothing
            import traceback

            frame = traceback.extract_tb(err.__traceback__)[-1]
            msg = f"{type(err).__name__} in da4ml's {frame.name} ({Path(frame.filename).name}:{frame.lineno})"
        raise FastmlError(f"da4ml cannot trace this model: {msg}") from None
    return comb_trace(inp, out)


#: Rounding modes da4ml 0.5's tracer implements (``FixedVariable.quantize``); others fail a bare assert there.
_DA4ML_ROUND_MODES = ("TRN", "RND")


def untraceable_quantiser(keras_model: Any) -> str | None:
    """Why da4ml 0.5 cannot trace ``keras_model``'s data quantisers, or None.

    da4ml traces only truncation/half-up rounding, and the model's first quantiser (on the raw input) only
    with wrap-around overflow; imported QKeras/QONNX models round half to even and saturate their input, which
    da4ml rejects with a bare ``assert`` — this says so in words instead.
    """
    for i, (where, inner) in enumerate(data_quantisers(keras_model)):
        round_mode, overflow = inner.round_mode, getattr(inner, "overflow_mode", None)
        if round_mode not in _DA4ML_ROUND_MODES:
            return (f"{where} rounds with {round_mode}"
                    + (" (half to even, as QKeras and QONNX do)" if round_mode == "RND_CONV" else "")
                    + f"; da4ml 0.5 implements only {' and '.join(_DA4ML_ROUND_MODES)} rounding")
        if i == 0 and overflow != "WRAP":
            return (f"{where} quantises the model input with {overflow} overflow; da4ml 0.5 traces only a "
                    "wrap-around (WRAP) quantiser on the input")
    return None


def data_quantisers(keras_model: Any) -> list[tuple[str, Any]]:
    """``(where, inner quantiser)`` of every HGQ2 data quantiser of ``keras_model``, in layer order (a quantiser
    layer, then each layer's input and output quantisers); what both compilers' tracers must implement."""
    from hgq.layers import Quantizer

    found: list[tuple[str, Any]] = []
    for layer in getattr(keras_model, "layers", []):
        candidates = [("", layer)] if isinstance(layer, Quantizer) else []
        # getattr: a layer may say enable_iq without owning an ``iq`` (HGQ2's QMultiHeadAttention quantises
        # inside its sub-layers)
        if getattr(layer, "enable_iq", False) and getattr(layer, "iq", None) is not None:
            candidates.append((" (input quantiser)", layer.iq))
        if getattr(layer, "enable_oq", False) and getattr(layer, "oq", None) is not None:
            candidates.append((" (output quantiser)", layer.oq))
        for role, q in candidates:
            inner = getattr(q, "quantizer", None)
            if getattr(inner, "round_mode", None) is not None:
                found.append((f"layer {layer.name!r}{role}", inner))
    return found


def pipeline(comb: Any, cutoff: float) -> Any:
    """da4ml ``Pipeline`` of ``comb`` with at most ``cutoff`` delay units per stage (retimed)."""
    from da4ml.trace import to_pipeline

    return to_pipeline(comb, cutoff, retiming=True, verbose=False)


def pipeline_figures(pipe: Any, clock_period_ns: float, source: str) -> tuple[Resources, Latency]:
    """Cost (LUT), register bits (FF) and latency (stages, ns, II=1) of a da4ml pipeline."""
    cycles = len(pipe.solutions)
    label = compiler_label()
    resources = Resources(lut=round(float(pipe.cost)), ff=int(pipe.reg_bits), dsp=0, bram=0, compiler=label,
                          note="da4ml cost model (adder bits), not synthesis")
    latency = Latency(cycles=cycles, ns=cycles * clock_period_ns, ii=1, source=source, compiler=label)
    return resources, latency


def da4ml_estimate(keras_model: Any, cfg: BuildConfig) -> tuple[Resources, Latency]:
    """da4ml's estimate for ``keras_model`` implemented as a da4ml RTL pipeline at ``cfg``'s clock.

    Usable for the hls4ml path too: the figures describe the same network built as da4ml RTL, not the
    HLS schedule, so both are labelled ``da4ml_estimate``. Tracing runs da4ml's CMVM solver, which
    takes minutes for wide layers.
    """
    cutoff, _ = latency_cutoff_for(cfg.firmware)
    pipe = pipeline(trace_keras(keras_model), cutoff)
    resources, latency = pipeline_figures(pipe, cfg.firmware.clock_period_ns, "da4ml_estimate")
    latency.latency_cutoff = cutoff  # type: ignore[attr-defined]  # extra field, kept in the report
    return resources, latency


def da4ml_takes(op: Any) -> bool:
    """Whether da4ml's HGQ2 converter has a handler for the Keras layer/operation ``op``."""
    from da4ml.converter.hgq2.layers import _registry

    return type(op) in _registry


#: da4ml operations that are adders (``vadd``: two variables, ``cadd``: a variable and a constant).
_ADDER_OPS = ("vadd", "cadd")


def layer_costs(keras_model: Any, cutoff: float) -> dict[str, Any]:
    """Where da4ml's cost goes: each Keras layer's share of the traced logic of ``keras_model``.

    The model is traced again with every layer's output kept (``trace_model(..., dump=True)``: the same
    logic as ``trace_keras``); each operation the model's output depends on is charged to the first layer (in
    execution order) whose output needs it, so the rows add up to the whole logic's cost (``total_lut``,
    before pipelining; the pipelined figure in ``resources.da4ml_estimate`` can differ by the retiming).
    Per layer: ``lut`` (da4ml's cost model: adder bits, lookup tables), ``adders``, ``lookups``, ``ops``, the
    output's ``elements`` and bit widths (``bits_min`` / ``bits_max`` / ``bits_total``, sign included), its
    combinational ``delay`` (da4ml delay units) and the pipeline ``stages`` its operations fall in at ``cutoff``
    delay units per stage (before retiming). Raises ``FastmlError`` where da4ml cannot trace the model.
    """
    from math import ceil

    import numpy as np
    from da4ml.converter import trace_model
    from da4ml.trace import HWConfig

    why = untraceable_quantiser(keras_model)
    if why:
        raise FastmlError(f"da4ml cannot trace this model: {why}")
    try:
        dumped = trace_model(keras_model, HWConfig(1, -1, -1), dump=True)
    except (NotImplementedError, AssertionError, ValueError, KeyError, TypeError) as err:
        raise FastmlError(f"da4ml cannot trace this model layer by layer: {' '.join(str(err).split())[:200]}") from None
    producer = {layer.output.name: layer for layer in keras_model.layers}
    final = [v for v in np.ravel(dumped[keras_model.outputs[0].name]) if hasattr(v, "_from")]
    # only what the output depends on is built (comb_trace drops the rest)
    live: set[Any] = set()
    stack = list(final)
    while stack:
        v = stack.pop()
        if v.id in live:
            continue
        live.add(v.id)
        stack.extend(v._from)
    charged: set[Any] = set()
    rows: list[dict[str, Any]] = []
    for tensor_name, arr in dumped.items():
        layer = producer.get(tensor_name)
        if layer is None or layer.__class__.__name__ == "InputLayer":
            continue
        outs = [v for v in np.ravel(arr) if hasattr(v, "_from")]
        mine: list[Any] = []
        # walk from every output of the layer, also one the logic does not keep: the next layer may read the
        # layer's inner values directly (a requantisation da4ml simplifies), and they are still this layer's work
        seen: set[Any] = set()
        stack = list(outs)
        while stack:
            v = stack.pop()
            if v.id in seen or v.id in charged or v.opr == "new":
                continue
            seen.add(v.id)
            if v.id in live:
                charged.add(v.id)
                mine.append(v)
            stack.extend(v._from)
        widths = [int(sum(v.kif)) for v in outs]
        costly = [v for v in mine if v.cost > 0]
        stages = [max(ceil(v.latency / cutoff) - 1, 0) for v in costly]
        rows.append({
            "layer": layer.name, "type": layer.__class__.__name__,
            "lut": round(float(sum(v.cost for v in mine)), 1),
            "adders": sum(1 for v in mine if v.opr in _ADDER_OPS and v.cost > 0),
            "lookups": sum(1 for v in mine if v.opr == "lookup"),
            "ops": len(costly),
            "elements": len(outs),
            "bits_min": min(widths, default=0), "bits_max": max(widths, default=0), "bits_total": sum(widths),
            "delay": round(float(max((v.latency for v in outs), default=0.0)), 2),
            "stages": [min(stages), max(stages)] if stages else None,
            "ebops": (float(np.asarray(layer.ebops)) if getattr(layer, "enable_ebops", False)
                      and getattr(layer, "_ebops", None) is not None else None),
        })
    total = round(float(sum(r["lut"] for r in rows)), 1)
    return {"source": "da4ml cost model (adder bits, lookup tables), per Keras layer, before pipelining",
            "cutoff": cutoff, "total_lut": total, "rows": rows,
            "not_run": {"ff": "da4ml counts register bits per pipeline stage, which does not keep layer "
                              "boundaries (the whole model's FF is in resources.da4ml_estimate)"}}
