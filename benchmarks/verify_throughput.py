"""Verification throughput: one trained model, one set of events, every simulation level fastml offers.

Levels, each compiled once and then run once over all events (events/s = events / wall time of that call):

- ``keras predict``: the quantised Keras model itself (the reference every level must match).
- ``da4ml emulator``: ``comb_trace(...).predict`` (fastml's bit-exact emulation path); "compile" is the trace.
- ``hls4ml csim (DA)`` / ``hls4ml csim (Latency)``: hls4ml C-simulation library; compile = convert + g++.
- ``verilator RTL sim``: da4ml Verilog, verilated; compile = trace + pipeline/write + verilator + g++.
- ``compiled emulator (fastml)``: the traced logic as integer C++ (``fastml.backends.rtl.emulator``) on the
  verification inputs tiled to 1 000 000 events, beside the DAIS interpreter (100 000 events), the same
  generator with int64 slots only (the path before int32 slots) and da4ml's own ``HLSModel`` (ap_fixed C++)
  on the same logic, speedups against the interpreter (and int32 / int64) in the same run.

Every row has ``events_per_s`` (wall) and ``events_per_cpu_s`` (events / CPU seconds of this process in that
call, all its threads): on the shared 2-core machine the wall figure mostly measures the other jobs, the CPU
figure is roughly what one idle core gives. The slow levels (hls4ml C-sim, its per-event loop, HLSModel)
run on at most what they finish in ``SLOW_LEVEL_BUDGET_S`` (a 1 000-event probe sets the count), and their
compiles are killed after ``COMPILE_TIMEOUT_S`` (``fastml.guards.tool_watchdog``), so the group cannot run for many
minutes on a large model: a level that does not fit says ``not run: <why>``.

All levels go through fastml's own backends (``fastml.backends.*.convert``), so this measures what
``fastml build`` does. The model and events come from the build group's jet-tagger project.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .core import REPO_ROOT, Context, Row, not_run

JET_CONFIG = REPO_ROOT / "configs" / "jet_tagger.yaml"


def _load(project: Path) -> tuple[Any, np.ndarray, np.ndarray]:
    from fastml._internal.keras_backend import ensure_backend

    ensure_backend()
    import hgq  # noqa: F401  (registers the HGQ2 layers)
    import keras

    model = keras.models.load_model(project / "model" / "model.keras", compile=False)
    events = np.load(project / "model" / "verify_inputs.npz")
    return model, np.asarray(events["x"]), np.asarray(events["y_ref"])


def _trained(model: Any) -> Any:
    from fastml.models import TrainedModel
    from fastml.models.network import logits_fn as _logits_fn

    return TrainedModel(kind="mlp", model=model, predict_quantized=_logits_fn(model), predict_float=None,
                        n_classes=int(model.output_shape[-1]))


def _measure(fn: Any, x: np.ndarray, y_ref: np.ndarray) -> dict[str, Any]:
    from fastml.verification import bit_exact_mismatches

    c0 = time.process_time()
    t0 = time.perf_counter()
    out = np.asarray(fn(x))
    wall = time.perf_counter() - t0
    cpu = max(time.process_time() - c0, 1e-9)
    mism, _ = bit_exact_mismatches(y_ref, out)
    return {"run_s": round(wall, 3), "events_per_s": round(len(x) / wall, 1),
            "events_per_cpu_s": round(len(x) / cpu, 1), "mismatches": mism}


#: Wall seconds a slow level (hls4ml C-sim, its per-event loop, da4ml HLSModel) may spend on its events.
SLOW_LEVEL_BUDGET_S = 20.0
#: Seconds the compiles of the slow levels here may take (fastml.guards.tool_watchdog kills g++ after them).
COMPILE_TIMEOUT_S = 300.0
#: Live operations above which da4ml's HLSModel (ap_fixed C++ of the whole logic, one function, no cache)
#: is not compiled here: its g++ grows to many minutes on large logic.
HLS_MODEL_MAX_OPS = 2_000


def _measure_capped(fn: Any, x: np.ndarray, y_ref: np.ndarray) -> dict[str, Any]:
    """``_measure`` on as many events as ``fn`` runs in about ``SLOW_LEVEL_BUDGET_S`` (a 1 000-event probe
    sets the count; the rate of these levels does not depend on it). Mismatches are counted on every event run."""
    probe = _measure(fn, x[:1000], y_ref[:1000])
    n = int(min(len(x), max(1000, probe["events_per_s"] * SLOW_LEVEL_BUDGET_S)))
    if n <= 1000:
        return {"events": len(x[:1000]), **probe}
    return {"events": n, **_measure(fn, x[:n], y_ref[:n])}


#: Events for the compiled-emulator rows: the verification inputs repeated to a million (issue #14, item 4).
MILLION = 1_000_000
#: Events for the slower levels in those rows (their rate does not depend on the count).
SLOW_EVENTS = 100_000


def compiled_emulator_rows(g: str, model: Any, x: np.ndarray, y_ref: np.ndarray, workdir: Path) -> list[Row]:
    """Interpreter vs fastml's compiled emulator vs da4ml's HLSModel on one traced logic, in one run.

    The events are the verification inputs tiled to ``MILLION`` (the reference is tiled with them, so every
    row is checked for bit-exactness on every event it ran). Compile figures include g++'s CPU seconds.
    """
    from fastml._internal.da4ml import trace_keras
    from fastml.backends.rtl import emulator as compiled_emulator

    reps = -(-MILLION // len(x))
    xm, ym = np.tile(x, (reps, 1))[:MILLION].astype(np.float64), np.tile(y_ref, (reps, 1))[:MILLION]
    t0 = time.perf_counter()
    comb = trace_keras(model)
    trace_s = time.perf_counter() - t0
    size = f"{len(comb.ops)} da4ml operations"
    rows: list[Row] = []
    m = min(SLOW_EVENTS, MILLION)
    interp_all = _measure(lambda a: comb.predict(a, n_threads=-1), xm[:m], ym[:m])
    interp_one = _measure(lambda a: comb.predict(a, n_threads=1), xm[:m], ym[:m])
    rows.append(Row(g, "da4ml emulator, DAIS interpreter, all threads", {"events": m, **interp_all},
                    note=f"{size}; trace {trace_s:.1f}s"))
    rows.append(Row(g, "da4ml emulator, DAIS interpreter, 1 thread", {"events": m, **interp_one}, note=size))

    cpu0 = os.times()
    t0 = time.perf_counter()
    try:
        emu = compiled_emulator.build(comb, workdir / "compiled_emulator")
    except Exception as err:  # UnsupportedLogic, ToolError
        rows.append(not_run(g, "compiled emulator (fastml)", str(err)))
        return rows
    cold_s = time.perf_counter() - t0
    cpu1 = os.times()
    gxx_cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
    t0 = time.perf_counter()
    compiled_emulator.build(comb, workdir / "compiled_emulator_again")
    warm_s = time.perf_counter() - t0
    live = int(sum(1 for r in comb.ref_count if r))
    fastml_rows: dict[int, dict[str, Any]] = {}
    for threads, label in ((0, "all threads"), (1, "1 thread")):
        emu.n_threads = threads
        res = _measure(emu, xm, ym)
        fastml_rows[threads] = res
        ref = interp_all if threads == 0 else interp_one
        rows.append(Row(g, f"compiled emulator (fastml), {label}",
                        {"events": MILLION, "compile_s": round(cold_s, 3), "compile_cpu_s": round(gxx_cpu, 2),
                         "cached_compile_s": round(warm_s, 3), **res,
                         "speedup": round(res["events_per_s"] / ref["events_per_s"], 1)},
                        note=f"{live} live operations, int{emu.slot_bits} slots; speedup = this / the interpreter "
                             f"row with the same threads, same run; compile = generate + g++ {' '.join(emu.flags)} "
                             f"(cache {'hit' if emu.cache_hit else 'miss'}); cached = the same logic again"))
    # the generator with int64 slots only (what it wrote before the int32 path): the int32 path's gain, same run
    if emu.slot_bits == 32:
        t0 = time.perf_counter()
        wide = compiled_emulator.build(comb, workdir / "compiled_emulator_int64", allow_int32=False)
        wide_s = time.perf_counter() - t0
        for threads, label in ((0, "all threads"), (1, "1 thread")):
            wide.n_threads = threads
            res = _measure(wide, xm, ym)
            mine = fastml_rows[threads]
            rows.append(Row(g, f"compiled emulator, int64 slots only (before), {label}",
                            {"events": MILLION, "compile_s": round(wide_s, 3), **res,
                             "int32_speedup": round(mine["events_per_s"] / res["events_per_s"], 2),
                             "int32_cpu_speedup": round(mine["events_per_cpu_s"] / res["events_per_cpu_s"], 2)},
                            note="allow_int32=False; int32_speedup = the int32 row with the same threads / this, "
                                 "same run (wall, and per CPU second)"))
    else:
        rows.append(not_run(g, "compiled emulator, int64 slots only (before)",
                            "the logic has results wider than 31 bits: the int64 path is the one above"))

    from da4ml.codegen.hls.hls_model import HLSModel

    item = "da4ml HLSModel (ap_fixed C++, OpenMP), all threads"
    if live > HLS_MODEL_MAX_OPS:
        rows.append(not_run(g, item, f"{live} live operations > HLS_MODEL_MAX_OPS = {HLS_MODEL_MAX_OPS}: its "
                                     "ap_fixed C++ takes many minutes of g++ on logic this large"))
        return rows
    hls = HLSModel(comb, "fastml_emu", workdir / "da4ml_hls", print_latency=False)
    cpu0 = os.times()
    t0 = time.perf_counter()
    try:
        import contextlib
        import io

        from fastml._internal.guards import tool_watchdog

        with (contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),
              tool_watchdog(COMPILE_TIMEOUT_S, "the benchmark's da4ml HLSModel compile")):
            hls.compile(openmp=True)
    except Exception as err:  # RuntimeError: compilation failed
        rows.append(not_run(g, item, str(err)))
        return rows
    hls_s = time.perf_counter() - t0
    cpu1 = os.times()
    hls_cpu = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
    res = _measure_capped(lambda a: hls.predict(a, n_threads=0), xm[:m], ym[:m])
    rows.append(Row(g, item, {"compile_s": round(hls_s, 3), "compile_cpu_s": round(hls_cpu, 2), **res,
                              "speedup": round(res["events_per_s"] / interp_all["events_per_s"], 1)},
                    note="da4ml.codegen.hls.HLSModel, make -f build_binder.mk (-O); evaluated, not a fastml level"))
    return rows


def verify_group(ctx: Context) -> list[Row]:
    """Rows of the ``verify`` group (see the module docstring)."""
    g = "verify"
    b = ctx.shared.get("jet_build")
    items = ["keras predict (reference)", "da4ml emulator (fastml)", "hls4ml csim (DA)", "hls4ml csim (Latency)",
             "verilator RTL sim", "da4ml emulator, 1 thread (DAIS interpreter)",
             "hls4ml csim (DA), per-event Python loop (hls4ml predict, before)"]
    if b is None:
        return [not_run(g, i, "needs the jet-tagger model from the build group, which did not run") for i in items]
    project = Path(b["project_dir"])
    model, x, y_ref = _load(project)
    trained = _trained(model)
    n = len(x)
    rows: list[Row] = []

    t0 = time.perf_counter()
    trained.predict_quantized(x[:8])  # JIT-compile the predict function once
    rows.append(Row(g, items[0], {"events": n, "compile_s": round(time.perf_counter() - t0, 3),
                                  **_measure(trained.predict_quantized, x, y_ref)},
                    note="compile = first-call JIT of Keras predict"))

    from fastml.recipe import load_config

    # da4ml emulator and verilator: the rtl backend builds both (trace once, then write + verilate)
    cfg = load_config(JET_CONFIG, {"firmware": {"backend": "rtl", "output_dir": str(ctx.workdir)},
                                   "verify": {"rtl_sim": True}})
    from fastml.backends import rtl_backend

    try:
        proj = rtl_backend.convert(trained, cfg, ctx.workdir / "verify_rtl")
    except Exception as err:  # ToolError from verilator, FastmlError from da4ml
        rows.append(not_run(g, items[1], str(err)))
        rows.append(not_run(g, items[4], str(err)))
        proj = None
    if proj is not None:
        t = proj.timings_s
        rows.append(Row(g, items[1], {"events": n, "compile_s": round(t["trace"], 3),
                                      **_measure(proj.simulators["emulator"], x, y_ref)},
                        note="compile = da4ml trace_model + comb_trace (CMVM solver); all cores (n_threads=-1)"))
        from da4ml._binary import dais_interp_run

        comb = getattr(proj.simulators["emulator"], "__self__", None)  # the emulator is CombLogic.predict
        program = comb.to_binary() if comb is not None else None
        if program is not None:
            one = _measure(lambda a: dais_interp_run(program, a, 1), x, y_ref)
            all_cores = rows[-1].values["events_per_s"]
            rows.append(Row(g, items[5], {"events": n, **one,
                                          "speedup": round(all_cores / one["events_per_s"], 2)},
                            note="speedup = the all-cores emulator row / this row, same run"))
        if "rtl_sim" in proj.simulators:
            compile_s = t["trace"] + t["write"] + t.get("rtl_compile", 0.0)
            stages = proj.latency.cycles if proj.latency else "?"
            rows.append(Row(g, items[4], {"events": n, "compile_s": round(compile_s, 3),
                                          **_measure(proj.simulators["rtl_sim"], x, y_ref)},
                            note=f"compile = trace {t['trace']:.1f}s + pipeline/write {t['write']:.1f}s + "
                                 f"verilator {t.get('rtl_compile', 0):.1f}s; {stages} pipeline stages"))
        else:
            rows.append(not_run(g, items[4], str(proj.info.get("rtl_sim", "rtl_sim not built"))))

    from fastml._internal.guards import tool_watchdog
    from fastml.backends import hls4ml_backend

    # Both strategies are converted here, in this process: the DA library comes from the compile cache the
    # build group's child filled (byte-identical sources), so hls4ml's own per-event loop can be measured
    # on the very library fastml's batch call runs. The build's own figures are in the build group.
    from .build_time import csim_cache_env

    os.environ.update(csim_cache_env(ctx))
    for item, strategy in ((items[2], "distributed_arithmetic"), (items[3], "latency")):
        cfg = load_config(JET_CONFIG, {"firmware": {"backend": "hls4ml", "strategy": strategy,
                                                    "output_dir": str(ctx.workdir)}})
        try:
            with tool_watchdog(COMPILE_TIMEOUT_S, f"the benchmark's hls4ml {strategy} conversion"):
                proj = hls4ml_backend.convert(trained, cfg, ctx.workdir / f"verify_hls4ml_{strategy}")
        except Exception as err:  # ToolError: the C++ did not compile, or g++ ran past COMPILE_TIMEOUT_S
            rows.append(not_run(g, item, str(err)))
            continue
        t = proj.timings_s
        bulk = _measure_capped(proj.simulators["csim"], x, y_ref)
        rows.append(Row(g, item, {"compile_s": round(t["hls4ml_convert"] + t["csim_compile"], 3), **bulk},
                        note=f"compile = hls4ml convert {t['hls4ml_convert']:.1f}s + g++ {t['csim_compile']:.1f}s "
                             f"(cache {proj.info['csim_cache']}, {proj.info['csim_flags']}); one batch call"))
        if strategy == "distributed_arithmetic":
            # hls4ml's loop is slow; its rate does not depend on the count
            loop = _measure_capped(lambda a, h=proj.handle: h.predict(np.ascontiguousarray(a, dtype=np.float32)),
                                   x, y_ref)
            rows.append(Row(g, items[6], {**loop,
                                          "speedup": round(bulk["events_per_s"] / loop["events_per_s"], 1)},
                            note="same library; speedup = fastml's batch call (row above) / this loop"))
    order = {name: i for i, name in enumerate(items)}
    rows.sort(key=lambda r: order.get(r.item, 99))
    # issue #14 item 4: the levels on a million events, compiled emulator vs interpreter in one run
    return rows + compiled_emulator_rows(g, model, x, y_ref, ctx.workdir)
