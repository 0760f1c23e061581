"""What the rtl backend can say about its projects without vendor tools: da4ml's figures saved with the
project (``firmware/metadata.json``) and yosys on its Verilog (or on the Verilog twin of a VHDL project)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ..._internal.yosys import yosys_resources
from ...errors import FastmlError, ToolError
from ...report import Resources

#: Name of the top module fastml gives the da4ml RTL (the ``*_wrapper`` module only repacks bits).
RTL_TOP = "fastml_model"


#: Extra keys fastml adds to da4ml's ``firmware/metadata.json``.
METADATA_FILE = "metadata.json"


def rtl_metadata(firmware_dir: Path) -> dict[str, Any]:
    """``firmware/metadata.json`` of a da4ml project (cost, latency in stages, reg_bits, and fastml's keys)."""
    path = firmware_dir / METADATA_FILE
    if not path.is_file():
        raise FastmlError(f"{firmware_dir}: no {METADATA_FILE} here (not a da4ml RTL project)")
    return json.loads(path.read_text())


def rtl_verilog_sources(firmware_dir: Path) -> list[Path]:
    """The Verilog files of a da4ml or alkaid project: ``src/*.v`` and the ``src/static/*.v`` primitives."""
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
        workdir = firmware_dir / "src" / "memfiles"
        workdir.mkdir(exist_ok=True)  # alkaid writes its tables into the Verilog, and no such folder
        return yosys_resources(files, top, part, workdir=workdir, log_path=log_path)
    pipe_file = firmware_dir / "model" / "pipeline.json"
    comb_file = firmware_dir / "model" / "comb.json.gz"  # alkaid's: the logic its RTL is written from
    if str(meta.get("compiler", "")).startswith("alkaid") and comb_file.is_file():
        from alkaid.codegen import RTLModel as AlkaidRTLModel
        from alkaid.types import CombLogic

        def write_twin(folder: Path) -> None:
            # the written logic has its ternary adders fused already; the same cutoff gives the same stages
            AlkaidRTLModel(CombLogic.load(comb_file), folder, top, flavor="verilog", part_name=part,
                           latency_cutoff=float(meta.get("latency_cutoff", -1)), ternary_fuse=False).write()
    elif pipe_file.is_file():
        from da4ml.cmvm.types import Pipeline
        from da4ml.codegen import RTLModel

        def write_twin(folder: Path) -> None:
            RTLModel(Pipeline.load(str(pipe_file)), top, folder, flavor="verilog", part_name=part).write()
    else:
        raise ToolError(f"{firmware_dir}: no Verilog sources and no model/pipeline.json or comb.json.gz to "
                        "generate them from")

    with tempfile.TemporaryDirectory(prefix="fastml-vtwin-") as tmp:
        write_twin(Path(tmp))
        res = yosys_resources(rtl_verilog_sources(Path(tmp)), top, part, workdir=Path(tmp) / "src" / "memfiles",
                              log_path=log_path)
    res.note = "synthesised from the Verilog twin of the same pipeline (yosys reads no VHDL)"  # type: ignore[attr-defined]
    return res
