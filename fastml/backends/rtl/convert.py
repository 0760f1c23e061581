"""RTL backend: a Keras (HGQ2) model straight to Verilog / VHDL, pipelined for the clock.

``convert`` traces the model with ``firmware.compiler`` (da4ml 0.5, the default, or alkaid: bit-exact with the
quantised Keras model either way), pipelines it with that compiler's latency cutoff
(``fastml._internal.da4ml.latency_cutoff_for`` / ``fastml._internal.alkaid.latency_cutoff_for``: each says how its
cutoff maps to ns), writes the RTL project into ``project_dir / "firmware"`` and, when ``verify.rtl_sim``,
compiles a verilator simulation of the generated RTL.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._internal import alkaid
from ..._internal.da4ml import compiler_label, latency_cutoff_for, pipeline, pipeline_figures, trace_keras
from ..._internal.tools import find_ghdl, verilator_env, verilator_version
from ...errors import ToolError, UnsupportedLogic
from ...models.qonnx_model import QONNXGraph
from ...report import NOT_RUN, Latency, Resources
from .. import FirmwareProject
from . import emulator as compiled_emulator
from .estimate import RTL_TOP
from .qonnx_trace import check_qonnx_build, trace_qonnx

if TYPE_CHECKING:
    from ...models import TrainedModel
    from ...recipe import BuildConfig

#: The verilated simulation passes values as int32: wider inputs/outputs cannot be simulated.
_SIM_MAX_BITS = 32
#: Build the simulation without C++ optimisation. Measured on 2 cores for the 64-32-32 jet tagger
#: (5.6 MB of verilated C++): 380 s with da4ml's default ``-O`` / verilator's ``-Os``, 36 s with ``-O0``,
#: while simulating 10 000 events takes 0.3 s instead of 0.15 s. Make reads these variable definitions
#: from MAKEFLAGS as command-line overrides (they reach verilator's own sub-make too); spaces are escaped.
_FAST_BUILD_MAKEFLAGS = r"OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0 CFLAGS=-std=c++17\ -fPIC\ -O0"
#: da4ml 0.5's Verilog lookup-table primitive (``src/static/lookup_table.v``) picks its ROM style with an attribute
#: that depends on a parameter: legal Verilog, but Icarus Verilog 11 refuses every instance ("... is not a constant
#: expression"), so no project with tables (the LUT network) compiled there. A table has 2**BW_IN entries, so
#: BW_IN <= 999 always holds: the constant attribute asks for the same ROM style.
_LOOKUP_TABLE_FILE = "src/static/lookup_table.v"
_LOOKUP_TABLE_STYLE = ('(* rom_style = (BW_IN <= 999) ? "distributed" : "block" *)', '(* rom_style = "distributed" *)')


def portable_lookup_table(firmware_dir: Path) -> bool:
    """Give da4ml's ``lookup_table.v`` under ``firmware_dir`` a constant ``rom_style`` (``_LOOKUP_TABLE_STYLE``), so
    every Verilog simulator elaborates it; True when the file was changed (absent or already constant: False)."""
    path = firmware_dir / _LOOKUP_TABLE_FILE
    if not path.is_file():
        return False
    text = path.read_text()
    if _LOOKUP_TABLE_STYLE[0] not in text:
        return False
    path.write_text(text.replace(*_LOOKUP_TABLE_STYLE))
    return True


def _io_too_wide(pipe: object) -> str | None:
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    kifs_in, kifs_out = get_io_kifs(pipe)  # type: ignore[arg-type]
    for which, kifs in (("input", kifs_in), ("output", kifs_out)):
        bits = int(sum(int(np.max(a)) for a in kifs))
        if bits > _SIM_MAX_BITS:
            return f"{which} words of {bits} bits exceed da4ml's {_SIM_MAX_BITS}-bit simulation interface"
    return None


@contextlib.contextmanager
def _process_env(env: dict[str, str]) -> Iterator[None]:
    """``env`` overlaid on ``os.environ`` for the block: alkaid asks ``verilator --version`` through the process's
    own PATH before it applies the environment it is given."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _compile(rtl_model: object, log_path: Path, n_jobs: int, alkaid_project: bool = False) -> None:
    """Verilate and build the simulation library; raises ``ToolError`` naming the log on failure."""
    env = verilator_env()
    env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {_FAST_BUILD_MAKEFLAGS}".strip()
    buf = io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(buf))
            stack.enter_context(contextlib.redirect_stderr(buf))
            if alkaid_project:
                stack.enter_context(_process_env(env))
                stack.enter_context(alkaid.verilator_flags_known(verilator_version(env)))
            rtl_model._compile(verbose=False, openmp=True, nproc=n_jobs, _env=env)  # type: ignore[attr-defined]
    except (RuntimeError, subprocess.CalledProcessError, OSError) as err:
        detail = buf.getvalue()
        if isinstance(err, subprocess.CalledProcessError):
            detail += (err.stderr or b"").decode(errors="replace") + (err.stdout or b"").decode(errors="replace")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(detail)
        lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
        first = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else type(err).__name__)
        raise ToolError(f"verilator build of the RTL simulation failed: {first[:200]} (log: {log_path})") from None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(buf.getvalue())


def convert(trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
    """Write the da4ml RTL of ``trained`` under ``project_dir / "firmware"`` and prepare its simulations.

    Guarantees: ``simulators["emulator"]`` is da4ml's bit-exact interpreter of the traced logic;
    ``simulators["compiled_emulator"]`` (only when ``verify.compiled_emulator``) the same logic compiled to
    integer C++ (``fastml.backends.rtl.emulator``; when it is off or an operation has no compiled form,
    ``info["compiled_emulator"]`` says ``"not run: <why>"``);
    ``simulators["rtl_sim"]`` (only when ``verify.rtl_sim`` and it can run) is the verilator
    simulation of the generated RTL, reading outputs ``latency.cycles`` clocks after the inputs; when
    it cannot run, ``info["rtl_sim"]`` says ``"not run: <why>"``. A missing or broken verilator raises
    ``ToolError`` (set ``verify.rtl_sim: false`` to skip on purpose). The simulators must be called
    before ``project_dir`` is moved (the simulation library reads its lookup-table files in place).
    """
    fw = cfg.firmware
    timings: dict[str, float] = {}
    firmware_dir = project_dir / "firmware"
    firmware_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(trained.model, QONNXGraph):  # a notebook's convert skips the recipe's check_layers
        check_qonnx_build(trained.model.wrapper, str(trained.model.source), fw.compiler)
    if fw.compiler == "alkaid":
        comb, rtl_model, resources, latency, info, too_wide = _write_alkaid(trained, cfg, firmware_dir, timings)
    else:
        comb, rtl_model, resources, latency, info, too_wide = _write_da4ml(trained, cfg, firmware_dir, timings)
    suffix = "v" if fw.flavor == "verilog" else "vhd"
    info["sources"] = sorted(str(p.relative_to(project_dir)) for p in (firmware_dir / "src").rglob(f"*.{suffix}"))
    simulators = {"emulator": comb.predict}

    # The same traced logic as integer C++ (.emulator): bit-exact like the interpreter, without
    # its per-operation decoding; a g++ failure is a ToolError, an operation without a compiled form leaves
    # the level not run.
    t0 = time.perf_counter()
    if not cfg.verify.compiled_emulator:
        info["compiled_emulator"] = f"{NOT_RUN}: verify.compiled_emulator is false"
    elif fw.compiler == "alkaid":
        info["compiled_emulator"] = (f"{NOT_RUN}: fastml's compiled emulator reads da4ml 0.5's operations; with "
                                     "alkaid the emulator level is alkaid's own C++ interpreter already")
    else:
        try:
            emu = compiled_emulator.build(comb, firmware_dir / "compiled_emulator")
        except UnsupportedLogic as err:
            info["compiled_emulator"] = f"{NOT_RUN}: {err}"
        else:
            simulators["compiled_emulator"] = emu
            info["compiled_emulator"] = (f"g++ {' '.join(emu.flags)}, "
                                         f"cache {'hit' if emu.cache_hit else 'miss'}")
        timings["compiled_emulator_compile"] = time.perf_counter() - t0

    if not cfg.verify.rtl_sim:
        info["rtl_sim"] = f"{NOT_RUN}: verify.rtl_sim is false"
    elif fw.flavor == "vhdl" and find_ghdl() is None:
        info["rtl_sim"] = (f"{NOT_RUN}: {fw.compiler} verilates VHDL by converting it with ghdl, which is not "
                           "installed (apt-get install ghdl), so the VHDL is unchecked beyond the emulator")
    elif too_wide is not None:
        info["rtl_sim"] = f"{NOT_RUN}: {too_wide}"
    else:
        t0 = time.perf_counter()
        _compile(rtl_model, project_dir / "logs" / "verilator.log", n_jobs=min(os.cpu_count() or 2, 8),
                 alkaid_project=fw.compiler == "alkaid")
        timings["rtl_compile"] = time.perf_counter() - t0
        info["rtl_sim"] = verilator_version()

        def rtl_sim(x: np.ndarray) -> np.ndarray:
            return rtl_model.predict(np.ascontiguousarray(x, dtype=np.float64))

        simulators["rtl_sim"] = rtl_sim

    (firmware_dir / "fastml_rtl.json").write_text(json.dumps(info, indent=2) + "\n")
    return FirmwareProject(
        backend="rtl",
        path=firmware_dir,
        simulators=simulators,
        reference=trained.predict_quantized,
        reference_name="qonnx execute_onnx" if isinstance(trained.model, QONNXGraph) else "quantized model",
        latency=latency,
        resources={"da4ml_estimate": resources},
        info=info,
        timings_s=timings,
        not_run={level: str(info[level]).removeprefix(f"{NOT_RUN}: ")
                 for level in ("compiled_emulator", "rtl_sim") if level not in simulators},
        handle=rtl_model,
    )


def _write_da4ml(trained: TrainedModel, cfg: BuildConfig, firmware_dir: Path, timings: dict[str, float]
                 ) -> tuple[Any, Any, Resources, Latency, dict[str, object], str | None]:
    """da4ml 0.5: trace, pipeline, write; returns the logic, the RTL model, its figures, info, and why the
    verilator simulation cannot carry its ports (or None)."""
    from da4ml.codegen import RTLModel

    fw = cfg.firmware
    t0 = time.perf_counter()
    comb = trace_keras(trained.model)
    timings["trace"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cutoff, cutoff_source = latency_cutoff_for(fw)
    pipe = pipeline(comb, cutoff)
    rtl_model = RTLModel(pipe, RTL_TOP, firmware_dir, flavor=fw.flavor, latency_cutoff=cutoff, print_latency=True,
                         part_name=fw.part, clock_period=fw.clock_period_ns)
    resources, latency = pipeline_figures(pipe, fw.clock_period_ns, "da4ml")
    actual_cutoff = max(max(st.latency) / (i + 1) for i, st in enumerate(pipe.solutions))
    label = compiler_label()
    info = _write_with_settings(rtl_model, fw, label, cutoff, cutoff_source)
    portable_lookup_table(firmware_dir)  # before the verilator build: it verifies the sources as shipped
    timings["write"] = time.perf_counter() - t0
    info |= {
        "max_delay_per_stage": float(actual_cutoff),  # da4ml delay units, after retiming
        "combinational_delay": float(max(comb.latency)),
    }
    return comb, rtl_model, resources, latency, info, _io_too_wide(pipe)


def _write_with_settings(rtl_model: Any, fw: Any, label: str, cutoff: float, cutoff_source: str
                         ) -> dict[str, object]:
    """Write ``rtl_model`` (either compiler's) with the build's settings in its metadata; returns the same settings
    as the start of the project's ``info``."""
    settings = {"top": RTL_TOP, "part": fw.part, "clock_period_ns": fw.clock_period_ns, "latency_cutoff": cutoff,
                "latency_cutoff_source": cutoff_source, "compiler": label}
    rtl_model.write(metadata=settings)
    return {"compiler": label, "flavor": fw.flavor, **settings}


def _write_alkaid(trained: TrainedModel, cfg: BuildConfig, firmware_dir: Path, timings: dict[str, float]
                  ) -> tuple[Any, Any, Resources, Latency, dict[str, object], str | None]:
    """alkaid: trace (HGQ2's plugin for a Keras model, ``qonnx_trace`` for a QONNX graph), pipeline and write, as
    ``_write_da4ml``; settings in ``fastml._internal.alkaid``."""
    fw = cfg.firmware
    t0 = time.perf_counter()
    if isinstance(trained.model, QONNXGraph):
        comb, qonnx_port = trace_qonnx(trained.model.wrapper, str(trained.model.source))
        input_port = (f"(k, i, f) = {qonnx_port}: the input Quant saturates and rounds half to even in the firmware "
                      "(fastml.backends.rtl.qonnx_trace)")
    else:
        comb = alkaid.trace_keras(trained.model)
        input_kif = alkaid.input_format(trained.model)
        input_port = ("the first quantiser's format" if input_kif is None else
                      f"(k, i, f) = {input_kif}: the first quantiser saturates or rounds half to even in the "
                      "firmware (fastml._internal.alkaid.input_format)")
    timings["trace"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    cutoff, cutoff_source = alkaid.latency_cutoff_for(fw)
    rtl_model = alkaid.rtl_model(comb, RTL_TOP, firmware_dir, fw, cutoff)
    resources, latency = alkaid.rtl_figures(rtl_model, fw.clock_period_ns, "da4ml")
    label = alkaid.compiler_label()
    info = _write_with_settings(rtl_model, fw, label, cutoff, cutoff_source)
    timings["write"] = time.perf_counter() - t0
    written = rtl_model._comb  # the logic the RTL is written from (ternary adders fused), saved in model/
    info |= {
        # alkaid units (~ns): a stage's latencies count from the model input, so less its registered inputs'
        "max_delay_per_stage": float(max(c.latency[1] - max(c.inp_latency, default=0.0)
                                         for c in rtl_model.fsm.logic.values())),
        "combinational_delay": float(max(comb.latency)),
        "input_port": input_port,
    }
    return written, rtl_model, resources, latency, info, alkaid.io_too_wide(written)
