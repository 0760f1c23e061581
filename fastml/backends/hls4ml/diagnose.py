"""hls4ml's side of ``fastml diagnose``: the project's own C++ instrumented with per-layer trace hooks.

The project's C++ sources (``firmware/firmware/*.cpp``, ``defines.h``, ``parameters.h``, weights,
generated code) are copied to a scratch folder, hls4ml's ``nnet::save_layer_output`` hook is inserted
after every layer call, and the copy is compiled with the project's ``build_lib.sh``. An edit a user made
to the project (a precision, a rounding mode, a table) is in what is diagnosed. Reference per hls4ml
layer: the Keras layer of the same name (``<layer>``: its output before a split activation,
``<layer>_<activation>``: after it, ``<layer>_iq``: its input quantiser's output).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import ToolError
from ...report import NOT_RUN
from ...verification.layers import (
    Diagnosis,
    FixedType,
    check_trimmed_readers,
    compare_layer,
    first_divergence,
    keras_layer_values,
    load_keras,
)

#: Scratch folder (inside the project) where the instrumented copy is compiled, one subfolder per source digest.
TRACE_CACHE = ".diagnose"


@dataclass(frozen=True)
class HlsLayer:
    """One layer call in the project's top-level C++: its output variable, type name and size."""

    name: str
    function: str
    var: str
    type_name: str
    size: str
    end_line: int  # index of the last line of the call block (the hook goes after it)
    call: str = ""  # the call block's text (which kernel it runs: fused_input_quantisers)


_ARRAY_DECL = re.compile(r"^\s*([A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*\[([^\]]+)\]\s*;")
_CALL_WITH_NAME = re.compile(r"^\s*(nnet::\w+|\w+)\s*(?:<.*>)?\s*\((.*)\)\s*;\s*//\s*(\w+)\s*$")
_CALL = re.compile(r"^\s*(nnet::\w+|\w+)\s*(?:<.*>)?\s*\((.*)\)\s*;")
_BLOCK_NAME = re.compile(r"^\s*//\s*(\w+)\s*$")


def _top_signature(cpp: str, project: str) -> tuple[list[tuple[str, str, str]], int]:
    """(type, name, size) of the top function's parameters and the index of its body's first line."""
    m = re.search(rf"void\s+{re.escape(project)}\s*\((.*?)\)\s*\{{", cpp, re.S)
    if m is None:
        raise ToolError(f"cannot find the top function {project}() in the project's C++")
    params = []
    for p in m.group(1).split(","):
        pm = re.match(r"\s*([A-Za-z_]\w*)\s+([A-Za-z_]\w*)\s*\[([^\]]+)\]\s*$", p)
        if pm is None:
            raise ToolError(f"cannot read parameter {p.strip()!r} of {project}() (io_parallel arrays expected)")
        params.append(pm.groups())
    return params, cpp[: m.end()].count("\n")


def hls_layers(cpp: str, project: str) -> tuple[list[HlsLayer], list[tuple[str, str, str]]]:
    """The layer calls of an hls4ml io_parallel top function, in dataflow order, and its parameters."""
    params, body = _top_signature(cpp, project)
    lines = cpp.splitlines()
    declared = {name: (t, size) for t, name, size in params}
    produced = {params[0][1]} if params else set()
    layers: list[HlsLayer] = []
    i = body
    while i < len(lines):
        line = lines[i]
        if (d := _ARRAY_DECL.match(line)) and not line.strip().startswith("return"):
            declared[d.group(2)] = (d.group(1), d.group(3).strip())
            i += 1
            continue
        calls: list[tuple[str, str]] = []
        name = None
        end = i
        if (c := _CALL_WITH_NAME.match(line)) is not None:
            calls, name = [(c.group(1), c.group(2))], c.group(3)
        elif (b := _BLOCK_NAME.match(line)) is not None and i + 1 < len(lines) and _CALL.match(lines[i + 1]):
            name, j = b.group(1), i + 1
            while j < len(lines) and (cm := _CALL.match(lines[j])) is not None:
                calls.append((cm.group(1), cm.group(2)))
                end = j
                j += 1
        if name is None:
            i += 1
            continue
        args = [a.strip() for _, a in calls for a in a.split(",")]
        outs = [a for a in args if a in declared and a not in produced]
        if outs:
            var = outs[0]
            produced.update(outs)
            layers.append(HlsLayer(name, calls[0][0], var, declared[var][0], declared[var][1], end,
                                   "\n".join(lines[i:end + 1])))
        i = end + 1
    return layers, params


def instrument(cpp: str, bridge: str, layers: Sequence[HlsLayer]) -> tuple[str, str]:
    """The project's top-level C++ and bridge with hls4ml's trace hooks added for ``layers``.

    A layer whose ``end_line`` is -1 is the top function's input: its hook goes first in the body."""
    lines = cpp.splitlines()
    for ly in sorted(layers, key=lambda item: item.end_line, reverse=True):
        hook = ["#ifndef __SYNTHESIS__",
                f'    nnet::save_layer_output<{ly.type_name}>({ly.var}, "{ly.name}", {ly.size});',
                "#endif"]
        lines[ly.end_line + 1:ly.end_line + 1] = hook
    anchor = "nnet::trace_type_size = element_size;"
    if anchor not in bridge:
        raise ToolError("the project's bridge has no trace storage (hls4ml < 0.8?): cannot trace its layers")
    inserts = "".join(f'\n    nnet::trace_outputs->insert(std::pair<std::string, void *>("{ly.name}", '
                      f"(void *) malloc({ly.size} * element_size)));" for ly in layers)
    return "\n".join(lines) + "\n", bridge.replace(anchor, anchor + inserts, 1)


#: hls4ml 1.3's name for the per-element quantised inputs that ``FuseQuantizerIntoDALayers`` writes into a DA kernel.
_DA_QUANTISED_INPUT = "model_inp_q_"


def _braced_block(source: str, header: str) -> str | None:
    """The ``{...}`` block that follows the first match of regex ``header`` (which ends at its opening brace)
    in C++ ``source``, braces balanced; None if there is none."""
    m = re.search(header, source)
    if m is None or not source[: m.end()].rstrip().endswith("{"):
        return None
    depth, start = 0, source.rindex("{", 0, m.end())
    for k in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[k], 0)
        if depth == 0:
            return source[start:k + 1]
    return None


def fused_input_quantisers(fw_src: Path, layers: Sequence[HlsLayer]) -> set[str]:
    """Names of the layers whose DA kernel quantises its inputs itself (hls4ml's ``FuseQuantizerIntoDALayers``).

    hls4ml 1.3 moves a heterogeneous input quantiser (per-element widths, pruned elements) of a
    distributed-arithmetic Dense/Conv layer into that layer's kernel (``void dense_da_<N>(...)`` in
    ``nnet_utils/nnet_code_gen.h``, with one ``model_inp_q_<i>`` per input): the array the producer writes
    then holds the value before that quantiser. The kernel is named in the call (``nnet::dense_da_<N>``) or,
    for convolutions, in the call's config struct (``configN::dense_da``, ``parameters.h``). Read from the
    project's sources, so an edited kernel is what counts.
    """
    code_gen = fw_src / "nnet_utils" / "nnet_code_gen.h"
    if not code_gen.is_file():
        return set()
    generated = code_gen.read_text()
    params_h = fw_src / "parameters.h"
    parameters = params_h.read_text() if params_h.is_file() else ""
    found: set[str] = set()
    for ly in layers:
        kernels = re.findall(r"\bdense_da_(\d+)\b", ly.call)
        for index in re.findall(r"\bconfig(\d+)\b", ly.call):
            struct = _braced_block(parameters, rf"\bstruct\s+config{index}\b[^{{;]*\{{") or ""
            kernels += re.findall(r"\bdense_da_(\d+)\b", struct)
        for index in kernels:
            body = _braced_block(generated, rf"\bvoid\s+dense_da_{index}\s*\([^)]*\)\s*\{{") or ""
            if _DA_QUANTISED_INPUT in body:
                found.add(ly.name)
    return found


def parse_typedefs(defines_h: str) -> dict[str, FixedType]:
    """``typedef ap_fixed<...> name;`` lines of ``defines.h``."""
    out: dict[str, FixedType] = {}
    for m in re.finditer(r"typedef\s+(ap_u?fixed\s*<[^>]*>|ap_u?int\s*<[^>]*>)\s+(\w+)\s*;", defines_h):
        t = FixedType.parse(m.group(1))
        if t is not None:
            out[m.group(2)] = t
    return out


def _hls_project_name(fw_dir: Path) -> str:
    cfg_file = fw_dir / "hls4ml_config.yml"
    if cfg_file.is_file():
        m = re.search(r"^ProjectName:\s*(\S+)", cfg_file.read_text(), re.M)
        if m:
            return m.group(1)
    candidates = sorted(fw_dir.glob("*_bridge.cpp"))
    if not candidates:
        raise ToolError(f"{fw_dir}: no hls4ml project (no hls4ml_config.yml or *_bridge.cpp)")
    return candidates[0].name.removesuffix("_bridge.cpp")


def _sources_digest(fw_dir: Path) -> str:
    """SHA-256 over the project's files (names and contents), compiled artefacts excluded."""
    h = hashlib.sha256()
    for f in sorted(p for p in fw_dir.rglob("*") if p.is_file() and p.suffix not in (".so", ".o")
                    and "tb_data" not in p.relative_to(fw_dir).parts):
        h.update(str(f.relative_to(fw_dir)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def trace_hls4ml(fw_dir: Path, x: np.ndarray, cache: Path) -> tuple[np.ndarray, dict[str, np.ndarray],
                                                                    list[HlsLayer], dict[str, FixedType]]:
    """Compile the project's sources with trace hooks under ``cache`` and run ``x`` through them.

    The instrumented build is kept in ``cache/<digest of the sources>/`` and reused while the project's
    files are unchanged (any edit changes the digest and rebuilds). Returns the outputs (events, n_out),
    each layer's values (events, elements), the layers and the project's typedefs. Raises ``ToolError``
    when the project cannot be instrumented or compiled.
    """
    project = _hls_project_name(fw_dir)
    cpp_path = fw_dir / "firmware" / f"{project}.cpp"
    if not cpp_path.is_file():
        raise ToolError(f"{cpp_path} is missing: not a complete hls4ml project")
    cpp = cpp_path.read_text()
    if "hls::stream" in cpp:
        raise ToolError("the project is io_stream; diagnose instruments io_parallel projects only")
    layers, params = hls_layers(cpp, project)
    if len(params) != 2:
        raise ToolError(f"{project}() has {len(params)} parameters; diagnose handles one input and one output")
    if not layers:
        raise ToolError(f"no layer calls found in {cpp_path.name}")
    # the input as the firmware holds it (the bridge's conversion into the input type) comes first
    body = _top_signature(cpp, project)[1]
    marker = next((k for k, ln in enumerate(cpp.splitlines()) if "insert layers" in ln), body)
    layers = [HlsLayer(params[0][1], "input", params[0][1], params[0][0], params[0][2], marker), *layers]
    fw_dir, cache = fw_dir.resolve(), cache.resolve()
    work = cache / _sources_digest(fw_dir)[:16]
    copy = work / "firmware"
    libs = sorted((copy / "firmware").glob(f"{project}-*.so"))
    # build_lib.sh compiles the copy's absolute weights folder into the library (WEIGHTS_DIR): a build made
    # before the project was moved reads weights from where it was (or exits the process if they are gone)
    marker = f"instrumented build of the sources with this digest, in {copy}\n"
    complete = work / "complete"
    if not complete.is_file() or complete.read_text() != marker or not libs:
        shutil.rmtree(cache, ignore_errors=True)  # one instrumented build per project, the current one
        shutil.copytree(fw_dir, copy, ignore=shutil.ignore_patterns("*.so", "*.o", "tb_data", "*.tar.gz"))
        bridge_path = copy / f"{project}_bridge.cpp"
        cpp_i, bridge_i = instrument(cpp, bridge_path.read_text(), layers)
        (copy / "firmware" / f"{project}.cpp").write_text(cpp_i)
        bridge_path.write_text(bridge_i)
        build = copy / "build_lib.sh"
        # -O0 instead of the script's -O3: the same sources and ap_fixed semantics, compiled several times faster
        build.write_text(re.sub(r'CFLAGS="-O\d', 'CFLAGS="-O0', build.read_text(), count=1))
        proc = subprocess.run(["bash", str(build)], cwd=copy, capture_output=True, text=True)
        log = cache / "build_lib.log"
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[-200:])
            raise ToolError(f"the traced copy of {fw_dir} did not compile: {first[:200]} (log: {log})")
        libs = sorted((copy / "firmware").glob(f"{project}-*.so"))
        if not libs:
            raise ToolError(f"build_lib.sh produced no {project}-*.so in {copy / 'firmware'} (log: {log})")
        complete.write_text(marker)
    typedefs = parse_typedefs((copy / "firmware" / "defines.h").read_text())
    outputs, traces = _run_traced(libs[-1], project, x, layers, _size_of(params[1][2]), copy / "firmware")
    return outputs, traces, layers, typedefs


def _size_of(expr: str) -> int:
    """An array size as hls4ml writes it: a number, or a product of numbers (``8*8`` for an (8, 8) input)."""
    factors = [f.strip() for f in expr.split("*")]
    if not all(f.isdigit() for f in factors):
        raise ToolError(f"array size {expr!r} is not a number or a product of numbers; diagnose needs hls4ml's "
                        "numeric sizes")
    return int(np.prod([int(f) for f in factors]))


class _TraceData(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("data", ctypes.c_void_p)]


def _run_traced(lib_path: Path, project: str, x: np.ndarray, layers: Sequence[HlsLayer], n_out: int,
                cwd: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Call the traced library event by event (doubles: exact for types up to 53 bits)."""
    lib = ctypes.CDLL(str(lib_path))
    top = getattr(lib, f"{project}_double")
    ptr = np.ctypeslib.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")
    top.argtypes, top.restype = [ptr, ptr], None
    lib.allocate_trace_storage.argtypes, lib.allocate_trace_storage.restype = [ctypes.c_size_t], None
    lib.collect_trace_output.argtypes = [ctypes.POINTER(_TraceData)]
    lib.collect_trace_output.restype = None
    lib.free_trace_storage.argtypes, lib.free_trace_storage.restype = [], None
    sizes = {ly.name: _size_of(ly.size) for ly in layers}
    traces = {name: np.empty((len(x), size)) for name, size in sizes.items()}
    outputs = np.empty((len(x), n_out))
    buf = (_TraceData * len(layers))()
    old = os.getcwd()
    os.chdir(cwd)  # weights are read relative to the library's folder in C simulation
    try:
        lib.allocate_trace_storage(ctypes.sizeof(ctypes.c_double))
        for i, row in enumerate(np.ascontiguousarray(x, np.float64)):
            out = np.zeros(n_out)
            top(np.ascontiguousarray(row), out)
            outputs[i] = out
            lib.collect_trace_output(buf)
            for item in buf:
                name = item.name.decode()
                data = ctypes.cast(item.data, ctypes.POINTER(ctypes.c_double))
                traces[name][i] = np.ctypeslib.as_array(data, shape=(sizes[name],))
        lib.free_trace_storage()
    finally:
        os.chdir(old)
    return outputs, traces


_TABLE_FUNCTIONS = ("unary_lut", "softmax", "sigmoid", "tanh", "lookup", "table")


def _diagnose_hls4ml_outputs(project_dir: Path, x: np.ndarray, y_saved: np.ndarray | None, diag: Diagnosis) -> None:
    """A project without a Keras model (a QONNX graph: model/model.onnx): no per-layer reference, so the
    per-layer comparison is not run; the traced firmware's outputs are compared with the build's saved
    reference outputs (``y_ref`` of model/verify_inputs.npz) where the events are the saved ones."""
    found = ", ".join(sorted(f.name for f in (project_dir / "model").glob("*") if f.suffix != ".npz")) or "nothing"
    diag.not_run = (f"no model/model.keras in the project (model/ holds {found}): the per-layer comparison needs "
                    "the quantised Keras model")
    diag.reference = "the build's saved reference outputs (model/verify_inputs.npz y_ref)"
    if y_saved is None:
        diag.notes.append(f"outputs {NOT_RUN}: no saved reference outputs for these events (--inputs)")
        return
    try:
        x64 = np.asarray(x, np.float32).astype(np.float64).reshape(len(x), -1)  # as the build's C-simulation ran
        y_fw = trace_hls4ml(project_dir / "firmware", x64, project_dir / TRACE_CACHE)[0]
    except ToolError as err:
        diag.not_run += f"; the outputs cannot be compared either: {err}"
        return
    y_ref = np.asarray(y_saved, np.float64).reshape(len(x), -1)
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)


def diagnose_hls4ml(project_dir: Path, x: np.ndarray, diag: Diagnosis, y_saved: np.ndarray | None = None) -> None:
    if not (project_dir / "model" / "model.keras").is_file():
        _diagnose_hls4ml_outputs(project_dir, x, y_saved, diag)
        return
    model = load_keras(project_dir)
    x32 = np.asarray(x, np.float32)  # the build's C-simulation and reference both ran on float32 events
    ref = keras_layer_values(model, x32)
    y_ref = np.asarray(model.predict(x32, verbose=0, batch_size=4096), np.float64).reshape(len(x), -1)
    try:
        y_fw, traces, layers, typedefs = trace_hls4ml(project_dir / "firmware",
                                                      x32.astype(np.float64).reshape(len(x32), -1),
                                                      project_dir / TRACE_CACHE)
    except ToolError as err:
        diag.not_run = str(err)
        return
    prev: np.ndarray | None = None
    traced = {ly.name for ly in layers}
    in_kernel = fused_input_quantisers(project_dir / "firmware" / "firmware", layers)
    for ly in layers:
        is_table = any(k in ly.function.lower() for k in _TABLE_FUNCTIONS)
        reference = ref.for_hls_layer(ly.name, traced, in_kernel)
        ftype = typedefs.get(ly.type_name)
        row = compare_layer(ly.name, ly.function, reference, traces[ly.name], ftype, prev, is_table)
        readers = ref.kernel_readers(ly.name, in_kernel)
        if row.status == "trimmed" and reference is not None and ftype is not None and readers:
            check_trimmed_readers(row, reference, ftype, readers)
        diag.layers.append(row)
        prev = traces[ly.name]
    diag.output_mismatches = int((y_ref != y_fw).sum()) if y_ref.shape == y_fw.shape else None
    diag.output_elements = int(y_ref.size)
    missing = [ly.name for ly in diag.layers if ly.status == "no reference"]
    if missing:
        diag.notes.append(f"no Keras value to compare for {', '.join(missing)} (hls4ml-only layers)")
    first_divergence(diag)

