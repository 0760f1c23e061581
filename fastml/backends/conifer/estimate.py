"""What the conifer backend can say about its projects without vendor tools: yosys on its VHDL, through
``ghdl synth``."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ..._internal.tools import find_ghdl
from ..._internal.yosys import yosys_resources
from ...errors import ToolError
from ...report import Resources


def conifer_vhdl_yosys_resources(firmware_dir: Path, part: str, log_path: Path | None = None) -> Resources:
    """yosys cell counts of a conifer VHDL project: ``ghdl synth`` turns its VHDL into Verilog first.

    The synthesisable files (library ``BDT``) are analysed in the order conifer's own
    ``ghdl_compile.sh`` lists them; the test-bench files are left out. Raises ``ToolError`` (one
    line) when ghdl or yosys is missing or fails; the result says in ``note`` how it was obtained.
    """
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
