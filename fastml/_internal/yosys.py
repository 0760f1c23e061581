"""yosys as fastml runs it: ``synth_xilinx`` on Verilog, cell counts grouped into LUT / FF / DSP / BRAM.

The cell counts by type (LUT1..LUT6, FF, CARRY, MUXF, DSP, BRAM) are kept in the result as extra fields.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import ToolError
from ..report import NOT_RUN, Report, Resources
from .tools import require_yosys


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
    ``(* rom_style = (BW_IN <= 999) ? "distributed" : "block" *)`` (an rtl build writes it as the constant
    ``"distributed"``: ``fastml.backends.rtl.convert.portable_lookup_table``); with it yosys 0.23's synth_xilinx stops
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


def yosys_into_report(report: Report, enabled: bool, synthesise: Callable[[], Resources],
                      log: Callable[[str], None]) -> None:
    """``report.resources["yosys"]`` from ``synthesise()`` during a build, or ``checks["yosys"]`` saying why not."""
    if not enabled:
        report.checks["yosys"] = f"{NOT_RUN}: firmware.yosys is false"
        return
    try:
        report.resources["yosys"] = synthesise()
        report.checks["yosys"] = "pass"
    except ToolError as err:
        report.checks["yosys"] = f"{NOT_RUN}: {err}"
        log(f"yosys: {err}")
