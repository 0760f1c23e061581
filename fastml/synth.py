"""Vendor synthesis (Vitis HLS / Vivado): run the tools where installed, read their reports into the report.

Nothing here ever invents a number: resources and latency land in the report only when parsed from a
file a Xilinx tool wrote. Without the tools a run says ``"not run: <tool> not found"``.

What runs, per backend (all inside ``<project>/firmware``, the tool's output in ``<project>/logs``):

- ``hls4ml``: hls4ml's ``build_prj.tcl`` with ``vitis_hls -f build_prj.tcl`` (or, for Vitis 2025.1+ where
  ``vitis_hls`` is gone, ``vitis-run --mode hls --tcl build_prj.tcl``). The stage switches go into
  ``build_opt.tcl``, the file hls4ml 1.3's Vitis template sources (``array set opt {...}``). Stage
  ``vsynth`` makes the script call ``vivado -mode batch -source vivado_synth.tcl`` (utilisation only).
- ``rtl``: da4ml 0.5.2's ``build_vivado_prj.tcl`` with ``vivado -mode batch -source``: synthesis, place
  and route, with utilisation and timing reports under ``output_<top>/reports/``. Stages do not apply.
- ``conifer``: ``build_hls.tcl`` (xilinxhls backend: HLS tool, then ``vivado_synth.tcl`` for ``vsynth``)
  or ``synth.tcl`` (vhdl backend: Vivado).

Units: ``bram`` counts 18 Kb blocks (``BRAM_18K``) for every source; Vivado's ``Block RAM Tile`` (36 Kb,
may be 0.5) is doubled and also kept as ``bram_tile``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._internal.vendor import TOOL_NAMES, SynthStep, find_vendor_tools
from .backends import get_backend
from .errors import FastmlError
from .report import NOT_RUN, Latency, Report, Resources

STAGES = ("csynth", "cosim", "export", "vsynth")


@dataclass
class SynthResult:
    """Outcome of one project's synthesis (or of reading its existing reports).

    ``status`` is "ok", "failed" or "not run: <why>"; ``resources`` / ``latency`` hold only figures
    parsed from tool-written files (keyed by source "vitis_hls" / "vivado"); ``logs`` are the tool logs.
    """

    project_dir: Path
    backend: str
    stages: list[str]
    status: str
    message: str = ""
    tools: dict[str, str | None] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    returncode: int | None = None
    wall_s: float = 0.0
    logs: list[Path] = field(default_factory=list)
    resources: dict[str, Resources] = field(default_factory=dict)
    latency: dict[str, Latency] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)  # kind -> path relative to project_dir

    @property
    def check(self) -> str:
        """The ``report.checks["synth"]`` value: "pass", "fail: <why>" or "not run: <why>"."""
        if self.status == "ok":
            return "pass"
        if self.status.startswith(NOT_RUN):
            return self.status
        return f"fail: {self.message}" if self.message else "fail"


# ---------------------------------------------------------------------------------------------- parsers


def _int_or_none(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None  # HLS writes "undef" for latencies it cannot bound


def _float_or_none(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.strip().replace(",", ""))
    except ValueError:
        return None


def parse_csynth_xml(path: str | Path) -> tuple[Latency, Resources]:
    """Read a Vivado HLS / Vitis HLS ``csynth.xml`` (or ``<top>_csynth.xml``) of the top function.

    Latency: ``cycles`` = worst-case latency, ``ii`` = maximum interval, ``ns`` = cycles x target clock
    period, extras ``best_cycles``, ``worst_cycles``, ``interval_min``, ``target_clock_ns``,
    ``estimated_clock_ns``. Resources: LUT, FF, DSP (``DSP`` or ``DSP48E``), BRAM_18K, URAM and the part's
    ``available`` counts. Both carry source "vitis_hls". Raises ``FastmlError`` if it is not such a file.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise FastmlError(f"{path}: not a readable HLS csynth XML report ({err})") from None
    overall = root.find("PerformanceEstimates/SummaryOfOverallLatency")
    area = root.find("AreaEstimates/Resources")
    if overall is None or area is None:
        raise FastmlError(f"{path}: no PerformanceEstimates/SummaryOfOverallLatency or AreaEstimates/Resources; "
                          "expected a Vitis/Vivado HLS csynth.xml")
    target = _float_or_none(root.findtext("UserAssignments/TargetClockPeriod"))
    worst = _int_or_none(overall.findtext("Worst-caseLatency"))
    best = _int_or_none(overall.findtext("Best-caseLatency"))
    latency = Latency(
        cycles=worst, ii=_int_or_none(overall.findtext("Interval-max")),
        ns=round(worst * target, 6) if worst is not None and target is not None else None,
        source="vitis_hls", best_cycles=best, worst_cycles=worst,
        interval_min=_int_or_none(overall.findtext("Interval-min")), target_clock_ns=target,
        estimated_clock_ns=_float_or_none(root.findtext("PerformanceEstimates/SummaryOfTimingAnalysis/"
                                                        "EstimatedClockPeriod")),
        tool_version=root.findtext("ReportVersion/Version"), report=str(path))

    def counts(node: ET.Element | None) -> dict[str, int | None]:
        if node is None:
            return {}
        dsp = node.findtext("DSP") if node.find("DSP") is not None else node.findtext("DSP48E")
        return {"lut": _int_or_none(node.findtext("LUT")), "ff": _int_or_none(node.findtext("FF")),
                "dsp": _int_or_none(dsp), "bram": _int_or_none(node.findtext("BRAM_18K")),
                "uram": _int_or_none(node.findtext("URAM"))}

    used = counts(area)
    resources = Resources(**used, available=counts(root.find("AreaEstimates/AvailableResources")) or None,
                          part=root.findtext("UserAssignments/Part"), tool_version=latency.tool_version,
                          report=str(path))
    return latency, resources


_TABLE_ROW = re.compile(r"^\|(.+)\|\s*$")
#: report_utilization row name (without a trailing '*') -> our key. UltraScale names, then 7-series.
_UTIL_ROWS = {"CLB LUTs": "lut", "Slice LUTs": "lut", "CLB Registers": "ff", "Slice Registers": "ff",
              "DSPs": "dsp", "Block RAM Tile": "bram_tile", "URAM": "uram"}


def _vivado_header(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, name in (("Tool Version", "tool_version"), ("Device", "device"), ("Design State", "design_state"),
                      ("Design", "design")):
        m = re.search(rf"^\|\s*{key}\s*:\s*(.+?)\s*$", text, re.MULTILINE)
        if m:
            out[name] = m.group(1)
    return out


def parse_vivado_utilization(path: str | Path) -> Resources:
    """Read a Vivado ``report_utilization`` text report (flat, post-synthesis or post-implementation).

    LUT = "CLB LUTs" / "Slice LUTs", FF = "CLB Registers" / "Slice Registers", DSP = "DSPs",
    BRAM = 2 x "Block RAM Tile" (18 Kb units; ``bram_tile`` keeps Vivado's count), URAM, with the
    ``available`` counts, ``device``, ``design_state`` and ``tool_version``. Source "vivado".
    Raises ``FastmlError`` when no LUT row is found (e.g. a hierarchical report).
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise FastmlError(f"{path}: cannot read Vivado utilisation report ({err.strerror})") from None
    used: dict[str, float] = {}
    available: dict[str, float] = {}
    used_col = avail_col = None
    for line in text.splitlines():
        m = _TABLE_ROW.match(line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(1).split("|")]
        if cells and cells[0] == "Site Type":
            used_col = cells.index("Used") if "Used" in cells else None
            avail_col = cells.index("Available") if "Available" in cells else None
            continue
        key = _UTIL_ROWS.get(cells[0].rstrip("*").strip()) if cells else None
        if key is None or used_col is None or key in used:
            continue
        value = _float_or_none(cells[used_col])
        if value is not None:
            used[key] = value
        if avail_col is not None:
            avail = _float_or_none(cells[avail_col])
            if avail is not None:
                available[key] = avail
    if "lut" not in used:
        raise FastmlError(f"{path}: no 'CLB LUTs' or 'Slice LUTs' row; expected a flat Vivado report_utilization "
                          "text report")

    def as_int(v: float | None) -> int | None:
        return None if v is None else round(v)

    def bram18(counts: dict[str, float]) -> int | None:
        return as_int(counts["bram_tile"] * 2) if "bram_tile" in counts else None

    avail_out = {k: as_int(available.get(k)) for k in ("lut", "ff", "dsp", "uram")}
    avail_out["bram"] = bram18(available)
    return Resources(lut=as_int(used.get("lut")), ff=as_int(used.get("ff")), dsp=as_int(used.get("dsp")),
                     bram=bram18(used), bram_tile=used.get("bram_tile"), uram=as_int(used.get("uram")),
                     available=avail_out, report=str(path), **_vivado_header(text))


def _section_lines(lines: list[str], title: str) -> list[str]:
    for i, line in enumerate(lines):
        if line.strip() == f"| {title}":
            return lines[i + 1:]
    return []


def parse_vivado_timing(path: str | Path) -> dict[str, Any]:
    """Read a Vivado ``report_timing_summary`` text report.

    Returns ``wns_ns``, ``tns_ns``, ``whs_ns``, ``ths_ns``, ``wpws_ns`` (None where Vivado wrote NA),
    ``tns_failing_endpoints``, ``clock`` / ``clock_period_ns`` / ``clock_mhz`` (first clock of the Clock
    Summary), ``achieved_period_ns`` = period - WNS and ``fmax_mhz``, ``timing_met`` (WNS >= 0 and WHS >= 0),
    plus ``device`` and ``tool_version``. Raises ``FastmlError`` without a Design Timing Summary table.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise FastmlError(f"{path}: cannot read Vivado timing report ({err.strerror})") from None
    lines = text.splitlines()
    summary = _section_lines(lines, "Design Timing Summary")
    header_idx = next((i for i, line in enumerate(summary[:20]) if "WNS(ns)" in line), None)
    if header_idx is None:
        raise FastmlError(f"{path}: no 'Design Timing Summary' table with WNS(ns); expected a Vivado "
                          "report_timing_summary text report")
    names = re.split(r"\s{2,}", summary[header_idx].strip())
    values_line = next((line for line in summary[header_idx + 1:header_idx + 6]
                        if line.strip() and not set(line.strip()) <= {"-", " "}), "")
    values = dict(zip(names, values_line.split(), strict=False))
    out: dict[str, Any] = {
        "wns_ns": _float_or_none(values.get("WNS(ns)")), "tns_ns": _float_or_none(values.get("TNS(ns)")),
        "tns_failing_endpoints": _int_or_none(values.get("TNS Failing Endpoints")),
        "whs_ns": _float_or_none(values.get("WHS(ns)")), "ths_ns": _float_or_none(values.get("THS(ns)")),
        "wpws_ns": _float_or_none(values.get("WPWS(ns)")),
    }
    clocks = _section_lines(lines, "Clock Summary")
    clock_row = None
    for i, line in enumerate(clocks[:30]):
        if line.startswith("Clock") and "Period(ns)" in line:
            clock_row = next((row for row in clocks[i + 1:i + 6] if row.strip() and not row.startswith("-")), None)
            break
    if clock_row:
        m = re.match(r"^(\S+)\s+\{[^}]*\}\s+([\d.]+)\s+([\d.]+)", clock_row)
        if m:
            out.update(clock=m.group(1), clock_period_ns=float(m.group(2)), clock_mhz=float(m.group(3)))
    if out.get("clock_period_ns") is not None and out["wns_ns"] is not None:
        achieved = round(out["clock_period_ns"] - out["wns_ns"], 6)
        out["achieved_period_ns"] = achieved
        out["fmax_mhz"] = round(1000.0 / achieved, 3) if achieved > 0 else None
    setup_ok = out["wns_ns"] is not None and out["wns_ns"] >= 0
    hold_ok = out["whs_ns"] is None or out["whs_ns"] >= 0
    out["timing_met"] = setup_ok and hold_ok if out["wns_ns"] is not None else None
    header = _vivado_header(text)
    out.update({k: header[k] for k in ("device", "tool_version") if k in header})
    out["report"] = str(path)
    return out


# ---------------------------------------------------------------------------------------- finding reports


def _newest_first(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)


def _fresh(path: Path, newer_than: float | None) -> bool:
    return newer_than is None or path.stat().st_mtime >= newer_than


def _csynth_candidates(firmware: Path) -> list[Path]:
    out: list[Path] = []
    for report_dir in firmware.rglob("syn/report"):
        solution_parent = report_dir.parent.parent.parent.name  # <prj>/solution1/syn/report
        names = ["csynth.xml", f"{solution_parent}_csynth.xml"]
        if solution_parent.endswith("_prj"):
            names.append(f"{solution_parent[:-4]}_csynth.xml")
        out += [report_dir / n for n in names if (report_dir / n).is_file()]
    return out


def _utilization_candidates(firmware: Path) -> list[tuple[str, Path]]:
    """(stage, path), most authoritative stage first: post-route, post-place (flat), post-synthesis."""
    out: list[tuple[str, Path]] = []
    for stage in ("post_route", "post_synth"):
        out += [(stage, p) for p in _newest_first(list(firmware.rglob(f"*_{stage}_util.rpt")))]
    for name in ("vivado_synth.rpt", "util.rpt"):  # hls4ml / conifer xilinxhls, conifer vhdl
        out += [("post_synth", p) for p in _newest_first(list(firmware.rglob(name)))]
    return out


def collect_reports(project_dir: str | Path, newer_than: float | None = None) -> SynthResult:
    """Parse whatever vendor reports already sit in ``project_dir/firmware`` (no tool is run).

    With ``newer_than`` (a ``time.time()``), files older than that are ignored, so a fresh run never
    picks up an earlier run's numbers. Status "ok" when at least one report was read, else
    "not run: no Vivado / Vitis HLS reports in <firmware>".
    """
    project_dir = Path(project_dir)
    firmware = project_dir / "firmware"
    result = SynthResult(project_dir=project_dir, backend="", stages=[], status="ok")
    if not firmware.is_dir():
        result.status = f"{NOT_RUN}: no firmware folder in {project_dir}"
        return result

    def rel(p: Path) -> str:
        return str(p.relative_to(project_dir))

    for path in _csynth_candidates(firmware):
        if _fresh(path, newer_than):
            latency, resources = parse_csynth_xml(path)
            latency.report, resources.report = rel(path), rel(path)  # type: ignore[attr-defined]
            result.latency["vitis_hls"], result.resources["vitis_hls"] = latency, resources
            result.reports["csynth"] = rel(path)
            break
    for stage, path in _utilization_candidates(firmware):
        if _fresh(path, newer_than):
            res = parse_vivado_utilization(path)
            res.report, res.stage = rel(path), stage  # type: ignore[attr-defined]
            result.resources["vivado"] = res
            result.reports["utilization"] = rel(path)
            break
    timing_files = [p for stage in ("post_route", "post_synth")
                    for p in _newest_first(list(firmware.rglob(f"*_{stage}_timing.rpt")))]
    timing_files += _newest_first(list(firmware.rglob("*timing_summary*.rpt")))
    for path in timing_files:
        if _fresh(path, newer_than):
            result.timing = parse_vivado_timing(path)
            result.timing["report"] = rel(path)
            result.reports["timing"] = rel(path)
            break
    if not result.reports:
        result.status = f"{NOT_RUN}: no Vivado / Vitis HLS reports in {firmware}"
    return result


# -------------------------------------------------------------------------------------------- running


def plan_steps(project_dir: Path, backend: str, stages: list[str], tools: dict[str, str | None]) -> list[SynthStep]:
    """The tool invocations for ``backend`` and ``stages``; writes ``build_opt.tcl`` where the flow reads it.

    Raises ``FastmlError`` for unknown stages or when the firmware folder lacks the backend's build script.
    """
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise FastmlError(f"synth stages {stages!r}: expected a non-empty subset of {', '.join(STAGES)}")
    return get_backend(backend).synth_steps(project_dir, stages, tools)


def _missing_tools(steps: list[SynthStep], stages: list[str], backend: str, tools: dict[str, str | None]) -> list[str]:
    needed = {step.tool for step in steps} | get_backend(backend).synth_tools(stages)
    return sorted({TOOL_NAMES[t] for t in needed if not tools.get(t)}, key=lambda n: (n != "vitis_hls", n))


def _run_step(step: SynthStep, exe: str, log: Path, timeout_s: float, env: dict[str, str]) -> tuple[int | None, str]:
    """Run one tool with its output in ``log``; returns (returncode, "" or why it failed)."""
    cmd = [exe, *step.args]
    with open(log, "w") as out:
        out.write(f"# fastml synth: {' '.join(cmd)}  (cwd {step.cwd})\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=step.cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # own process group: a timeout kills Vivado's children too
        try:
            rc = proc.wait(timeout=max(timeout_s, 0.001))
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return None, f"{step.tool} timed out after {timeout_s:g} s and was killed"
    if rc != 0:
        return rc, f"{Path(exe).name} exited with {rc}"
    return 0, ""


def run_synth(project_dir: str | Path, stages: list[str], timeout_s: float, backend: str,
              tools: dict[str, str | None] | None = None) -> SynthResult:
    """Run the vendor flow for one built project; never raises for tool problems, reports them instead.

    Guarantees: with a required tool missing, status is "not run: <tools> not found" and nothing runs;
    otherwise each tool's combined output is kept in ``project_dir/logs/synth_<tool>.log``; a tool that
    exits non-zero or outlives ``timeout_s`` (whole flow) gives status "failed" (its process group is
    killed); a flow that exits 0 but leaves no report also gives "failed". Only reports written during
    this run are parsed. Raises ``FastmlError`` only for a project without the backend's build script or
    for unknown stages.
    """
    project_dir = Path(project_dir)
    tools = find_vendor_tools() if tools is None else tools
    result = SynthResult(project_dir=project_dir, backend=backend, stages=list(stages), status="ok",
                         tools=dict(tools))
    steps = plan_steps(project_dir, backend, list(stages), tools)
    missing = _missing_tools(steps, list(stages), backend, tools)
    if missing:
        result.status = f"{NOT_RUN}: {', '.join(missing)} not found"
        result.message = (f"{' and '.join(missing)} not on PATH nor in $XILINX_VITIS/bin / $XILINX_HLS/bin / "
                          "$XILINX_VIVADO/bin")
        return result
    logs = project_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    tool_dirs = [str(Path(p).parent) for p in tools.values() if p]
    env["PATH"] = os.pathsep.join([*dict.fromkeys(tool_dirs), env.get("PATH", "")])  # build_prj.tcl execs vivado
    started = time.time()
    t0 = time.perf_counter()
    for step in steps:
        exe = tools[step.tool]
        assert exe is not None
        log = logs / step.log_name
        result.commands.append([exe, *step.args])
        result.logs.append(log)
        remaining = timeout_s - (time.perf_counter() - t0)
        rc, why = _run_step(step, exe, log, remaining, env)
        result.returncode = rc
        if why:
            result.status = "failed"
            result.message = f"{why} (log: {log.relative_to(project_dir)})"
            break
    result.wall_s = round(time.perf_counter() - t0, 3)
    # Parse what this run wrote, also after a failure (e.g. csynth done, vsynth failed): those are real numbers.
    found = collect_reports(project_dir, newer_than=started - 1.0)
    result.resources, result.latency, result.timing, result.reports = (found.resources, found.latency,
                                                                        found.timing, found.reports)
    if result.status == "ok" and not found.reports:
        result.status = "failed"
        result.message = (f"the tools exited 0 but wrote no csynth.xml / utilisation report "
                          f"(log: {result.logs[-1].relative_to(project_dir)})")
    return result


# -------------------------------------------------------------------------------------------- report


def fold_into_report(report: Report, result: SynthResult) -> Report:
    """Add a synth result to ``report``: ``resources["vitis_hls" | "vivado"]``, HLS latency via
    ``set_latency``, ``checks["synth"]`` (and ``checks["vivado_timing"]`` when a timing report was read),
    ``timings_s["synth"]`` and a ``synth`` section (status, stages, logs, reports, timing).

    Only figures present in ``result`` (parsed from tool files) are written; nothing else is changed.
    """
    for source, res in result.resources.items():
        report.resources[source] = res
    for lat in result.latency.values():
        report.set_latency(lat)
    report.checks["synth"] = result.check
    if result.timing.get("timing_met") is not None:
        wns = result.timing.get("wns_ns")
        report.checks["vivado_timing"] = ("pass" if result.timing["timing_met"]
                                          else f"fail: WNS {wns} ns, WHS {result.timing.get('whs_ns')} ns")
    if result.wall_s:
        report.timings_s["synth"] = result.wall_s
    section = {"status": result.status, "message": result.message, "stages": result.stages,
               "tools": {k: v for k, v in result.tools.items()},
               "logs": [str(p.relative_to(result.project_dir)) if p.is_relative_to(result.project_dir) else str(p)
                        for p in result.logs],
               "returncode": result.returncode, "reports": result.reports,
               "timing": dict(result.timing)}
    report.synth = section  # an extra key (Report allows them)
    return report
