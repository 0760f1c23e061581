"""Estimation stage: latency and resources without vendor tools.

Two sources, each labelled in the report:

- ``da4ml_estimate`` / ``da4ml``: da4ml's own cost model of the traced network (LUTs ~ adder bits,
  FFs = pipeline register bits, no DSP/BRAM since distributed arithmetic uses neither). For the rtl
  backend the latency (``source: "da4ml"``) is exact: it is the depth of the generated pipeline, and
  the verilator simulation reads outputs exactly that many cycles after the inputs.
- ``yosys``: ``synth_xilinx`` on the generated Verilog; cell counts by type (LUT1..LUT6, FF, CARRY,
  MUXF, DSP, BRAM) are kept in the report as extra fields.

Latency cutoff vs clock. da4ml measures delay in "adder units": with ``HWConfig(1, -1, -1)`` (what
fastml traces with) every adder / carry chain counts 1 whatever its width, and a lookup table
``max(bits_in - 6, 1)``. ``RTLModel`` cuts a new pipeline stage whenever ``latency_cutoff`` units
are exceeded. da4ml's own examples and CLI pair ``latency_cutoff=5`` with a 5 ns clock, i.e. about
one adder (carry chain + routing on UltraScale+) per ns, so when ``firmware.latency_cutoff`` is unset
fastml uses ``cutoff = clock_period_ns / NS_PER_DELAY_UNIT`` with ``NS_PER_DELAY_UNIT = 1.0``
(at least 1). The latency in ns is ``cycles * clock_period_ns`` (the register-to-register time).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import project_config
from .errors import FastmlError, ToolError
from .report import NOT_RUN, Latency, Report, Resources, load_report, write_report
from .tools import require_yosys

if TYPE_CHECKING:
    from .config import BuildConfig, FirmwareConfig

#: Assumed delay of one da4ml delay unit (one adder) in ns; see the module docstring.
NS_PER_DELAY_UNIT = 1.0
#: Name of the top module fastml gives the da4ml RTL (the ``*_wrapper`` module only repacks bits).
RTL_TOP = "fastml_model"
#: Extra keys fastml adds to da4ml's ``firmware/metadata.json``.
METADATA_FILE = "metadata.json"


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
    from hgq.layers import Quantizer

    first = True
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
            round_mode, overflow = getattr(inner, "round_mode", None), getattr(inner, "overflow_mode", None)
            if round_mode is None:
                continue
            if round_mode not in _DA4ML_ROUND_MODES:
                return (f"layer {layer.name!r}{role} rounds with {round_mode}"
                        + (" (half to even, as QKeras and QONNX do)" if round_mode == "RND_CONV" else "")
                        + f"; da4ml 0.5 implements only {' and '.join(_DA4ML_ROUND_MODES)} rounding")
            if first and overflow != "WRAP":
                return (f"layer {layer.name!r}{role} quantises the model input with {overflow} overflow; da4ml 0.5 "
                        "traces only a wrap-around (WRAP) quantiser on the input")
            first = False
    return None


def pipeline(comb: Any, cutoff: float) -> Any:
    """da4ml ``Pipeline`` of ``comb`` with at most ``cutoff`` delay units per stage (retimed)."""
    from da4ml.trace import to_pipeline

    return to_pipeline(comb, cutoff, retiming=True, verbose=False)


def pipeline_figures(pipe: Any, clock_period_ns: float, source: str) -> tuple[Resources, Latency]:
    """Cost (LUT), register bits (FF) and latency (stages, ns, II=1) of a da4ml pipeline."""
    cycles = len(pipe.solutions)
    resources = Resources(lut=round(float(pipe.cost)), ff=int(pipe.reg_bits), dsp=0, bram=0,
                          note="da4ml cost model (adder bits), not synthesis")
    latency = Latency(cycles=cycles, ns=cycles * clock_period_ns, ii=1, source=source)
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


# ----------------------------------------------------------------------------------------------- yosys


def yosys_family(part: str) -> str:
    """``synth_xilinx -family`` for a Xilinx part name (UltraScale+ ``xcup``, UltraScale ``xcu``, else 7-series)."""
    p = part.lower()
    if re.match(r"^xc(vu\d+p|ku\d+p|zu|au|vp|vc|ve)", p):
        return "xcup"
    if re.match(r"^xc(vu|ku)\d", p):
        return "xcu"
    return "xc7"


_LUT = re.compile(r"^LUT[1-6]$")
_FF = re.compile(r"^FD[A-Z]*$")
_CARRY = re.compile(r"^CARRY(4|8)$")
_MUXF = re.compile(r"^MUXF[789]$")
_DSP = re.compile(r"^DSP48E\d*$")
_BRAM = re.compile(r"^RAMB(18|36)")


def resources_from_cells(cells: dict[str, int]) -> Resources:
    """Group yosys cell counts: LUT = LUT1..LUT6 + INV (an inverter is a LUT1), FF = FD*, DSP = DSP48E*,
    BRAM in 36 Kb blocks (RAMB18 counts a half). The per-cell counts are kept as extra fields."""
    def total(pattern: re.Pattern[str]) -> int:
        return sum(n for cell, n in cells.items() if pattern.match(cell))

    bram36 = sum(n for c, n in cells.items() if c.startswith("RAMB36"))
    bram18 = sum(n for c, n in cells.items() if c.startswith("RAMB18"))
    return Resources(
        lut=total(_LUT) + cells.get("INV", 0),
        ff=total(_FF),
        dsp=total(_DSP),
        bram=bram36 + (bram18 + 1) // 2,
        carry=total(_CARRY),
        muxf=total(_MUXF),
        cells=dict(sorted(cells.items())),
    )


def yosys_resources(verilog_files: Sequence[Path | str], top: str, part: str = "xcvu13p-flga2577-2-e",
                    workdir: Path | None = None, log_path: Path | None = None, timeout_s: float = 3600) -> Resources:
    """Synthesise ``verilog_files`` with ``yosys synth_xilinx -top TOP -flatten -noiopad`` and count cells.

    ``workdir`` is where yosys runs (relative ``$readmemh`` files resolve there; da4ml's lookup tables
    live in ``src/memfiles``). Guarantees a ``Resources`` with lut/ff/dsp/bram filled and the per-cell
    breakdown in ``cells``; raises ``ToolError`` (one line, log path named) if yosys is missing or fails.
    """
    yosys = require_yosys()
    files = [str(Path(f).resolve()) for f in verilog_files]
    if not files:
        raise ToolError(f"yosys: no Verilog files given for top module {top!r}")
    with tempfile.TemporaryDirectory(prefix="fastml-yosys-") as tmp:
        stat_json = Path(tmp) / "stat.json"
        script = (f"read_verilog -defer {' '.join(files)}; {_rom_style_fix(files, top)}"
                  f"synth_xilinx -family {yosys_family(part)} -top {top} -flatten -noiopad; "
                  f"tee -q -o {stat_json} stat -json")
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([yosys, "-q", "-p", script], cwd=workdir or Path(tmp), capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ToolError(f"yosys synth_xilinx did not finish within {timeout_s:.0f} s") from None
        wall = time.perf_counter() - t0
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(f"$ yosys -q -p '{script}'\n{proc.stdout}\n{proc.stderr}")
        if proc.returncode != 0 or not stat_json.is_file():
            errors = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ERROR" in ln]
            why = errors[0].strip() if errors else f"exit code {proc.returncode}"
            where = f" (log: {log_path})" if log_path else ""
            raise ToolError(f"yosys synth_xilinx failed: {why}{where}")
        stat = json.loads(stat_json.read_text())
    cells = {str(k): int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    res = resources_from_cells(cells)
    res.tool = yosys_version()  # type: ignore[attr-defined]
    res.family = yosys_family(part)  # type: ignore[attr-defined]
    res.wall_s = round(wall, 2)  # type: ignore[attr-defined]
    return res


def _rom_style_fix(files: Sequence[str], top: str) -> str:
    """Yosys commands that drop ``rom_style`` attributes, for designs that set one (else "").

    da4ml's ``lookup_table.v`` (the LUT network's tables, softmax tables) marks its ROM
    ``(* rom_style = (BW_IN <= 999) ? "distributed" : "block" *)``; with it yosys 0.23's synth_xilinx stops
    with "no valid mapping found for memory ...lut_rom" (tables of 64 to 1 024 entries tried). Without the
    attribute yosys maps the ROM to LUTs (LUT6/MUXF7-9 logic), which is what a distributed ROM is on the FPGA.
    """
    if not any("rom_style" in Path(f).read_text(errors="replace") for f in files):
        return ""
    return f"hierarchy -top {top}; setattr -unset rom_style; "


def yosys_version() -> str:
    """``yosys -V`` (e.g. ``Yosys 0.23 (git sha1 ...)``)."""
    out = subprocess.run([require_yosys(), "-V"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def rtl_metadata(firmware_dir: Path) -> dict[str, Any]:
    """``firmware/metadata.json`` of a da4ml project (cost, latency in stages, reg_bits, and fastml's keys)."""
    path = firmware_dir / METADATA_FILE
    if not path.is_file():
        raise FastmlError(f"{firmware_dir}: no {METADATA_FILE} here (not a da4ml RTL project)")
    return json.loads(path.read_text())


def rtl_verilog_sources(firmware_dir: Path) -> list[Path]:
    """The Verilog files of a da4ml project: ``src/*.v`` and the ``src/static/*.v`` primitives."""
    src = firmware_dir / "src"
    return sorted(src.glob("*.v")) + sorted((src / "static").glob("*.v"))


def rtl_yosys_resources(firmware_dir: Path, part: str, log_path: Path | None = None) -> Resources:
    """``yosys_resources`` on a da4ml project folder (the backend's ``firmware/``).

    For a VHDL project (yosys reads Verilog only) the Verilog twin of the same saved pipeline
    (``model/pipeline.json``) is generated in a temporary folder and synthesised; the result says so
    in ``note``.
    """
    meta = rtl_metadata(firmware_dir)
    top = str(meta.get("top", RTL_TOP))
    files = rtl_verilog_sources(firmware_dir)
    if files:
        return yosys_resources(files, top, part, workdir=firmware_dir / "src" / "memfiles", log_path=log_path)
    pipe_file = firmware_dir / "model" / "pipeline.json"
    if not pipe_file.is_file():
        raise ToolError(f"{firmware_dir}: no Verilog sources and no model/pipeline.json to generate them from")
    from da4ml.cmvm.types import Pipeline
    from da4ml.codegen import RTLModel

    with tempfile.TemporaryDirectory(prefix="fastml-vtwin-") as tmp:
        RTLModel(Pipeline.load(str(pipe_file)), top, Path(tmp), flavor="verilog", part_name=part).write()
        res = yosys_resources(rtl_verilog_sources(Path(tmp)), top, part, workdir=Path(tmp) / "src" / "memfiles",
                              log_path=log_path)
    res.note = "synthesised from the Verilog twin of the same da4ml pipeline (yosys reads no VHDL)"  # type: ignore[attr-defined]
    return res


# ------------------------------------------------------------------------------------- project estimates


def _find_keras_model(project_dir: Path) -> Path | None:
    """The quantised model a build saved (``model/model.keras``; never the float twin)."""
    path = project_dir / "model" / "model.keras"
    return path if path.is_file() else None


def estimate_project(project_dir: Path, cfg: BuildConfig | None = None, run_yosys: bool = True) -> Report:
    """Re-run estimation on a built project folder and write its report back.

    rtl backend: da4ml figures from ``firmware/metadata.json`` (resources ``da4ml_estimate``, exact
    latency ``da4ml``) and, if ``run_yosys``, ``yosys`` cell counts. hls4ml backend: ``da4ml_estimate``
    of the saved Keras model (``model/model.keras``). Anything that cannot run is recorded in
    ``report.firmware["estimates"]`` as ``"not run: <why>"``; nothing is reported as measured that was not.
    """
    project_dir = Path(project_dir)
    report = load_report(project_dir)
    cfg = cfg if cfg is not None else project_config(project_dir)
    fw = cfg.firmware
    notes: dict[str, str] = {}
    t0 = time.perf_counter()
    firmware_dir = project_dir / "firmware"
    if report.backend == "rtl":
        meta = rtl_metadata(firmware_dir)
        clock = float(meta.get("clock_period_ns", fw.clock_period_ns))
        cycles = int(meta["latency"])
        report.resources["da4ml_estimate"] = Resources(
            lut=round(float(meta["cost"])), ff=int(meta["reg_bits"]), dsp=0, bram=0,
            note="da4ml cost model (adder bits), not synthesis")
        report.set_latency(Latency(cycles=cycles, ns=cycles * clock, ii=1, source="da4ml"))
        notes["da4ml_estimate"] = "ok"
        if run_yosys:
            report.resources["yosys"] = rtl_yosys_resources(firmware_dir, str(meta.get("part", fw.part)),
                                                            log_path=project_dir / "logs" / "yosys.log")
            notes["yosys"] = "ok"
        elif "yosys" in report.resources:
            notes["yosys"] = "kept from an earlier run (--no-yosys)"
        else:
            notes["yosys"] = f"{NOT_RUN}: --no-yosys"
    elif report.backend == "hls4ml":
        model_file = _find_keras_model(project_dir)
        if model_file is None:
            notes["da4ml_estimate"] = f"{NOT_RUN}: no model/model.keras in {project_dir}"
        else:
            from .model_files import load_keras_model

            model = load_keras_model(model_file)  # a corrupt file: one line naming it
            resources, latency = da4ml_estimate(model, cfg)
            report.resources["da4ml_estimate"] = resources
            report.set_latency(latency)
            notes["da4ml_estimate"] = "ok"
        notes["yosys"] = f"{NOT_RUN}: hls4ml writes C++, there is no Verilog without Vitis HLS (fastml synth)"
    else:
        notes["da4ml_estimate"] = f"{NOT_RUN}: backend {report.backend} is not a da4ml network"
        notes["yosys"] = f"{NOT_RUN}: backend {report.backend} has no Verilog to synthesise here"
    report.firmware = {**report.firmware, "estimates": notes}
    report.timings_s["estimate"] = round(time.perf_counter() - t0, 2)
    write_report(report, project_dir)
    return report


def conifer_vhdl_yosys_resources(firmware_dir: Path, part: str, log_path: Path | None = None) -> Resources:
    """yosys cell counts of a conifer VHDL project: ``ghdl synth`` turns its VHDL into Verilog first.

    The synthesisable files (library ``BDT``) are analysed in the order conifer's own
    ``ghdl_compile.sh`` lists them; the test-bench files are left out. Raises ``ToolError`` (one
    line) when ghdl or yosys is missing or fails; the result says in ``note`` how it was obtained.
    """
    from .tools import find_ghdl

    ghdl = find_ghdl()
    if ghdl is None:
        raise ToolError("ghdl not found: apt-get install ghdl (yosys reads Verilog; ghdl converts conifer's VHDL)")
    script = firmware_dir / "ghdl_compile.sh"
    if not script.is_file():
        raise ToolError(f"{script} missing: not a conifer VHDL project")
    sources = [firmware_dir / line.split()[-1] for line in script.read_text().splitlines()
               if line.startswith("ghdl -a") and "--work=BDT" in line]
    with tempfile.TemporaryDirectory(prefix="fastml-ghdl-") as tmp:
        for src in sources:
            proc = subprocess.run([ghdl, "-a", "--std=08", "--work=BDT", str(src)], cwd=tmp, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise ToolError(f"ghdl could not analyse {src}: {proc.stderr.strip().splitlines()[0]}")
        verilog = Path(tmp) / "bdt_top.v"
        with verilog.open("w") as out:
            proc = subprocess.run([ghdl, "synth", "--std=08", "--work=BDT", "--out=verilog", "BDTTop"], cwd=tmp,
                                  stdout=out, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise ToolError(f"ghdl synth of conifer's BDTTop failed: {proc.stderr.strip().splitlines()[-1]}")
        resources = yosys_resources([verilog], "BDTTop", part, log_path=log_path)
    extra = dict(resources.model_extra or {})
    extra["note"] = "conifer VHDL converted to Verilog by ghdl synth, then yosys synth_xilinx"
    return Resources(lut=resources.lut, ff=resources.ff, dsp=resources.dsp, bram=resources.bram, **extra)
