"""Where the Xilinx tools are, and how a flow step invokes them: shared by the backends' synth flows
(``Backend.synth_steps``) and the synth stage that runs them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import FastmlError

#: Tool key -> (executable name, environment variables whose ``bin/`` may hold it).
_TOOL_LOCATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vitis_hls": ("vitis_hls", ("XILINX_HLS", "XILINX_VITIS")),
    "vitis_run": ("vitis-run", ("XILINX_VITIS",)),
    "vivado": ("vivado", ("XILINX_VIVADO",)),
}


def find_vendor_tools(env: dict[str, str] | None = None) -> dict[str, str | None]:
    """Absolute paths of ``vitis_hls``, ``vitis_run`` (``vitis-run``) and ``vivado``, or None where absent.

    Looks on ``PATH`` first, then in ``$XILINX_HLS/bin`` / ``$XILINX_VITIS/bin`` / ``$XILINX_VIVADO/bin``.
    """
    env = dict(os.environ if env is None else env)
    found: dict[str, str | None] = {}
    for key, (exe, variables) in _TOOL_LOCATIONS.items():
        path = shutil.which(exe, path=env.get("PATH", ""))
        for var in variables:
            if path is None and env.get(var):
                path = shutil.which(exe, path=str(Path(env[var]) / "bin"))
        found[key] = path
    return found


@dataclass
class SynthStep:
    """One tool invocation of a vendor flow: ``find_vendor_tools`` key, arguments, folder, log file name."""

    tool: str  # key in find_vendor_tools()
    args: list[str]
    cwd: Path
    log_name: str


def opt_tcl(opts: dict[str, bool]) -> str:
    body = "".join(f"    {k:<10} {int(v)}\n" for k, v in opts.items())
    return "array set opt {\n" + body + "}\n"


def hls_step(script: Path, tools: dict[str, str | None], argv_opts: str) -> SynthStep:
    if tools.get("vitis_hls") or not tools.get("vitis_run"):
        return SynthStep("vitis_hls", ["-f", script.name, argv_opts], script.parent, "synth_vitis_hls.log")
    return SynthStep("vitis_run", ["--mode", "hls", "--tcl", script.name], script.parent, "synth_vitis_hls.log")


#: ``find_vendor_tools`` key -> the tool's name in messages (vitis-run is Vitis HLS too).
TOOL_NAMES = {"vitis_hls": "vitis_hls", "vitis_run": "vitis_hls", "vivado": "vivado"}


def flow_script(project_dir: Path, name: str, backend: str) -> Path:
    """The first ``name`` under ``project_dir/firmware``; ``FastmlError`` naming what was expected otherwise."""
    firmware = project_dir / "firmware"
    found = sorted(firmware.rglob(name)) if firmware.is_dir() else []
    if not found:
        raise FastmlError(f"{firmware}: no {name} (expected the {backend} project written by 'fastml build')")
    return found[0]
