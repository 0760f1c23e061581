"""What the backends' ``export`` (``fastml export``) share: a testbench for a project built without one, the files of
a project folder, the names of its inputs and outputs, tables of fixed-point elements, and the settings of its
vendor scripts (``set name value`` Tcl lines, ``array set opt`` stage switches).

Each backend's own ``export`` module (``rtl/export.py``, ``hls4ml/export.py``, ``conifer/export.py``) chooses the
files and writes the README's interface and simulator lines; ``fastml.export`` adds the rest of the bundle.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FastmlError
from ..report import LATENCY_SOURCE_ORDER, NOT_RUN, Report
from ._testbench import EXPECTED_FILE, INPUTS_FILE, INTERFACE_FILE, TB_DIR

#: Compiled on the building machine (by fastml, or a C compiler run in the project folder): never bundled.
COMPILED_SUFFIXES = (".so", ".o", ".a", ".gch", ".d")
#: Where a build saves the events it verified bit for bit and its reference outputs for them (``x``, ``y_ref``).
EVENTS_FILE = "model/verify_inputs.npz"


def ensure_testbench(project_dir: Path, write: Callable[[Path, np.ndarray, np.ndarray], str]) -> None:
    """Give a project built before fastml wrote testbenches its ``firmware/tb/``, from the events its build verified.

    ``write``: the backend's ``testbench`` (what it wrote in words, or ``"not run: why"``, which becomes a one-line
    ``FastmlError``: a bundle without its testbench would hand over firmware nobody can check).
    """
    if (project_dir / "firmware" / TB_DIR / INTERFACE_FILE).is_file():
        return
    events = project_dir / EVENTS_FILE
    try:
        with np.load(events) as saved:
            x, y_ref = saved["x"], saved["y_ref"]
    except (OSError, KeyError, ValueError) as err:
        raise FastmlError(f"{events}: cannot read the verification events to write firmware/{TB_DIR} ({err}); "
                          "expected the x and y_ref arrays a build saves (rebuild the project)") from None
    said = write(project_dir, x, y_ref)
    if said.startswith(NOT_RUN):
        raise FastmlError(f"export: {project_dir}: no testbench to bundle ({said})")


def collect(root: Path, parts: Iterable[str], prefix: str = "firmware",
            skip: Callable[[Path], bool] = lambda _: False) -> dict[str, Path]:
    """Bundle paths (``prefix/<path under root>``) -> files of ``root``'s ``parts``: files, and folders taken whole
    (sorted, ``skip`` left out); a part that is not there is left out (a project written by an older tool)."""
    files: dict[str, Path] = {}
    for part in parts:
        path = root / part
        found = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else []
        for f in found:
            if not skip(f):
                files[f"{prefix}/{f.relative_to(root).as_posix()}"] = f
    return files


def feature_names(project_dir: Path, n: int) -> list[str]:
    """The recipe's input feature names (``model/scaler.json``) when there is one per input element."""
    try:
        names = json.loads((project_dir / "model" / "scaler.json").read_text()).get("features", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(s) for s in names] if isinstance(names, list) and len(names) == n else []


def class_names(project_dir: Path, n: int) -> list[str]:
    """The classes a classifier's outputs score (``report.json``'s ``data.classes``), one per output element."""
    try:
        names = json.loads((project_dir / "report.json").read_text()).get("data", {}).get("classes", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [str(s) for s in names] if isinstance(names, list) and len(names) == n else []


def element_table(fields: list[dict[str, Any]], names: list[str], what: str = "feature") -> list[str]:
    """A Markdown table of bus elements (``interface.json``'s ``inputs`` / ``outputs``: index, lsb, width, signed,
    integers, fractional), with a name column when ``names`` has one per element."""
    head = "| element | bits | type | signed | integer bits | fraction bits |"
    if names:
        head = f"| element | {what} | bits | type | signed | integer bits | fraction bits |"
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for f in fields:
        msb = f["lsb"] + f["width"] - 1
        kind = "ap_fixed" if f["signed"] else "ap_ufixed"
        cells = [str(f["index"])] + ([f"`{names[f['index']]}`"] if names else []) + [
            f"[{msb}:{f['lsb']}]", f"`{kind}<{f['width']},{f['width'] - f['fractional']}>`",
            "yes" if f["signed"] else "no", str(f["integers"]), str(f["fractional"])]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def named_elements(what: str, names: list[str]) -> list[str]:
    """One line naming each element in order (``0 `zlogz`, 1 ...``), or nothing without names."""
    if not names:
        return []
    return ["", f"{what}: " + ", ".join(f"{i} `{n}`" for i, n in enumerate(names)) + "."]


def vectors_sentence(events: int, top: str) -> str:
    """What ``firmware/tb/`` of an HDL project holds, for the README (each backend says how its testbench checks)."""
    return (f"`firmware/{TB_DIR}/` holds `{INPUTS_FILE}` / `{EXPECTED_FILE}` ({events} events the build verified "
            "bit for bit, one bus word a line in hex, with a `//` header naming each element's bits and format), "
            f"`{INTERFACE_FILE}` and the self-checking testbench `{top}_tb`")


def tcl_settings(path: Path) -> dict[str, str]:
    """The ``set name value`` lines of a vendor script (``project.tcl``, ``hls_parameters.tcl``): name -> value."""
    try:
        text = path.read_text()
    except OSError as err:
        raise FastmlError(f"{path}: cannot read the project's settings ({err.strerror}); expected the Tcl file the "
                          "project's tool writes") from None
    return {m[1]: m[2].strip().strip('"') for m in re.finditer(r"^\s*set\s+(\w+)\s+(.+?)\s*$", text, re.M)}


def stage_switches(path: Path) -> dict[str, int]:
    """The stage switches of the ``array set opt { csim 1 ... }`` block of a vendor script (hls4ml's
    ``build_opt.tcl``, conifer's ``build_hls.tcl``): name -> 0/1; the last block wins, as in Tcl; {} when the file
    cannot be read (the README then names the tool's defaults)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    blocks = re.findall(r"array\s+set\s+opt\s*\{([^}]*)\}", text)
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s*(\w+)\s+([01])\s*$", blocks[-1], re.M)} if blocks else {}


def read_source(path: Path, what: str, expected: str) -> str:
    """The text of a file of the project; one-line ``FastmlError`` naming it, ``what`` it holds and the ``expected``
    origin when it cannot be read."""
    try:
        return path.read_text()
    except OSError as err:
        raise FastmlError(f"export: {path}: cannot read {what} ({err.strerror}); expected {expected}") from None


def c_prototype(source: Path, top: str) -> str:
    """``void <top>(...);`` as declared or defined in an HLS project's header or source (``FastmlError``, one line,
    without one)."""
    text = read_source(source, "the top function's source", "the HLS project as its tool wrote it")
    m = re.search(rf"\bvoid\s+{re.escape(top)}\s*\((.*?)\)\s*[;{{]", text, re.S)
    if m is None:
        raise FastmlError(f"export: {source}: no top function {top}(...); expected the source the project's tool "
                          "wrote")
    return m[0][:-1].rstrip() + ";"


def c_declarations(text: str) -> tuple[dict[str, tuple[str, str | None]], dict[str, int]]:
    """The typedefs (name -> (definition, array size or None)) and integer constants (``#define N 16``, ``static
    const int n = 16;``) of C++ headers."""
    typedefs = {t[2]: (" ".join(t[1].split()), t[3]) for t in
                re.finditer(r"\btypedef\s+([^;{}]+?)\s+(\w+)\s*(?:\[\s*([^\]]+?)\s*\])?\s*;", text)}
    numbers = {d[1]: int(d[2]) for d in re.finditer(r"^\s*#define\s+(\w+)\s+(\d+)\s*$", text, re.M)}
    numbers.update({d[1]: int(d[2]) for d in re.finditer(r"\bconst\s+(?:unsigned\s+)?int\s+(\w+)\s*=\s*(\d+)\s*;",
                                                           text)})
    return typedefs, numbers


def _split_params(text: str) -> list[str]:
    """Comma-separated parameters at bracket depth 0 (``nnet::array<ap_fixed<8,3>, 4>``, ``x[f(a, b)]`` stay whole)."""
    params, depth, start = [], 0, 0
    for i, c in enumerate(text):
        depth += {"<": 1, "(": 1, "[": 1, ">": -1, ")": -1, "]": -1}.get(c, 0)
        if c == "," and depth == 0:
            params.append(text[start:i])
            start = i + 1
    params.append(text[start:])
    return [" ".join(p.split()) for p in params if p.strip()]


def _count(expr: str, numbers: dict[str, int]) -> int | str:
    """An array size (``16``, ``N_INPUT_1_1*N_INPUT_2_1``, ``n_features``) as a number, else as written."""
    values = [int(f) if f.isdigit() else numbers.get(f) for f in (f.strip() for f in expr.split("*"))]
    return math.prod(v for v in values if v is not None) if all(v is not None for v in values) else expr


def c_arguments(prototype: str, declarations: str, direction: Callable[[int, str], str],
                shapes: dict[str, list[int]] | None = None) -> list[dict[str, Any]]:
    """One row per argument of the top function ``prototype``: name, direction (``direction(position, name)``:
    ``in``, ``out`` or another word), C++ type, the fixed-point type of an element (through ``declarations``'
    typedefs, ``nnet::array`` words unpacked), and the element count (``shapes[name]`` where given, else the array
    size, evaluated with the headers' constants where it can be)."""
    typedefs, numbers = c_declarations(declarations)
    rows = []
    for position, param in enumerate(_split_params(prototype[prototype.index("(") + 1:prototype.rindex(")")])):
        stream = re.fullmatch(r"hls::stream<\s*(\w+)\s*>\s*&\s*(\w+)", param)
        array = re.fullmatch(r"(?:const\s+)?(\w+)\s+&?\s*(\w+)\s*(?:\[\s*(.+?)\s*\])?", param)
        ctype, name = (stream[1], stream[2]) if stream else (array[1], array[2]) if array else ("", param)
        size = array[3] if array else None
        element = ctype
        for _ in range(8):  # typedef chains are short; a cycle would be a broken header
            if element not in typedefs:
                break
            element, dims = typedefs[element]
            size = size or dims
        packed = re.fullmatch(r"nnet::array<\s*(.+?)\s*,\s*([^,]+?)\s*>", element)
        if packed:
            element = typedefs.get(packed[1], (packed[1], None))[0]
        shape = (shapes or {}).get(name)
        elements = math.prod(int(n) for n in shape) if shape else _count(size, numbers) if size else 1
        rows.append({"name": name, "direction": direction(position, name), "ctype": ctype, "element": element,
                     "stream": bool(stream), "per_word": packed[2] if packed else None, "elements": elements})
    return rows


def argument_table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table of ``c_arguments`` rows, with each element's fixed-point format."""
    lines = ["| argument | direction | elements | C++ type | element type | signed | fraction bits |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = ap_format(r["element"])
        kind = f"`hls::stream<{r['ctype']}>` ({r['per_word']} elements a word)" if r["stream"] else f"`{r['ctype']}`"
        signed, frac = ("yes" if fmt[2] else "no", str(fmt[0] - fmt[1])) if fmt else ("", "")
        count = r["elements"] if isinstance(r["elements"], int) else f"`{r['elements']}`"
        lines.append(f"| `{r['name']}` | {r['direction']} | {count} | {kind} | `{r['element']}` | {signed} | {frac} |")
    return lines


def ap_format(type_text: str) -> tuple[int, int, bool] | None:
    """``ap_fixed<W,I,...>`` / ``ap_ufixed`` / ``ap_int<W>`` / ``ap_uint<W>`` -> (W, I with the sign, signed)."""
    m = re.fullmatch(r"\s*ap_(u?)(fixed|int)\s*<\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?(?:,[^>]*)?>\s*", type_text)
    if m is None or (m[2] == "fixed") != (m[4] is not None):
        return None
    width = int(m[3])
    return width, int(m[4]) if m[4] is not None else width, not m[1]


def clock_line(part: str | None, clock_ns: str | float | None, where: str) -> str:
    """``part `...`, clock 5 ns (200 MHz)``; ``where``: the file (and key) the clock period comes from, for the
    one-line error when it is not a positive number."""
    try:
        ns = float(clock_ns)  # type: ignore[arg-type]
        mhz = 1000 / ns
    except (TypeError, ValueError, ZeroDivisionError):
        raise FastmlError(f"export: {where}: clock period {clock_ns!r} is not a number of ns; expected e.g. 5.0 "
                          "(rebuild the project)") from None
    return f"part `{part or '?'}`, clock {ns:g} ns ({mhz:g} MHz)"


def latency_lines(report: Report, where: str) -> list[str]:
    """The report's latency and II by source (most trusted first), for an HLS project whose tool schedules its own:
    ``where`` says where that tool reports it."""
    by_source = report.latency_by_source or {report.latency.source: report.latency}
    order = {s: i for i, s in enumerate(LATENCY_SOURCE_ORDER)}
    lines = []
    for source, lat in sorted(by_source.items(), key=lambda kv: order.get(kv[0], len(order))):
        if source == NOT_RUN or lat.cycles is None:
            continue
        ns = f" ({lat.ns:g} ns)" if lat.ns is not None else ""
        ii = f"II = {lat.ii}" if lat.ii is not None else "II not estimated"
        lines.append(f"- **Latency: {lat.cycles} clocks**{ns}, **{ii}**: report.json, source `{source}`.")
    return (lines or ["- Latency and II: not estimated in report.json."]) + [f"- {where}."]


__all__ = ["COMPILED_SUFFIXES", "EVENTS_FILE", "ap_format", "argument_table", "c_arguments", "c_declarations",
           "c_prototype", "class_names", "clock_line", "collect", "element_table", "ensure_testbench", "feature_names",
           "latency_lines", "named_elements", "read_source", "stage_switches", "tcl_settings", "vectors_sentence"]
