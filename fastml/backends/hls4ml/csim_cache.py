"""Compiling hls4ml's generated C-simulation: chosen flags, translation units in parallel, content-hash cache.

hls4ml compiles its C-simulation with the project's ``build_lib.sh``: ``-O3``, one translation unit after
the other. fastml compiles the *same* generated sources (``firmware/<project>.cpp`` and
``<project>_bridge.cpp``, unmodified) itself, because:

- g++'s garbage collector can run less often (see ``GCC_GC_PARAMS``; ``OPT_LEVEL`` says why the
  optimisation level stays hls4ml's ``-O3``);
- the two translation units (and fastml's tiny batch loop, see ``BATCH_SOURCE``) compile at the same time;
- ``<project>.cpp`` itself is split over translation units by ``fastml.csim_split`` where that is estimated
  to pay: hls4ml's generated DA kernels (function templates in ``nnet_code_gen.h``) are explicitly
  instantiated in extra units and declared ``extern template`` in ``<project>.cpp`` (via ``-include``), so
  the same hls4ml bodies compile in parallel. Measured on the 64-32-32 jet tagger (g++ 12 -O3, CPU seconds,
  each unit alone, load 2-5): one unit 24-25 s; split, ``<project>.cpp`` 16 s + one kernel unit 16 s. As
  ``build_csim`` runs them on the quiet 2-core machine (load 0.4-1.2): split 20.3-21.4 s vs one unit
  25.8-26.5 s of wall (1.2-1.3x). The split costs more CPU in all (38-40 s vs 27-28 s: each unit parses the
  ap_types/nnet_utils headers and instantiates the ap_types operators the kernels share; +26-65 % on four
  other generated models), which a machine busy with other work pays instead of gaining: while another job
  held ~1.3 of the 2 cores, split 41-47 s vs one unit 27-29 s (``FASTML_CSIM_SPLIT=off`` turns it off;
  benchmarks/README.md, ``csim_compile``, has the figures).
  Simulation speed is unchanged (jet tagger, 10 000 events, one batch call: 36 200 events/s split, 35 400
  one unit, both bit-exact). A plan the parser cannot make (nothing
  recognised, a small model) compiles one unit; a split that fails to compile or link for any reason is
  compiled again as one unit (``compile.log`` and ``CsimBuild.units``/``units_note`` say which way and
  why). A wrong split cannot change results (the same bodies, in another unit), and every build's
  bit-exact verification runs as before either way;
- the compiled library is cached under ``~/.cache/fastml/csim/<key>/`` where ``key`` hashes every file the
  compile reads (the generated firmware sources, ap_types and nnet_utils headers, the bridge), the
  compiler's identity and the flags; a project whose generated sources are byte-identical to an earlier
  one's reuses its library. Entries are written into a private temporary folder and renamed into place
  (atomic on one file system), so concurrent builds never see a half-written entry; two builds racing
  for the same key both compile and the first rename wins (the contents are identical).

``FASTML_CSIM_CACHE=off`` (or ``0``/``false``/``no``) disables the cache; any other value is the cache
folder (default ``$XDG_CACHE_HOME/fastml/csim``, else ``~/.cache/fastml/csim``).

Weights are read at run time from ``firmware/weights/*.txt`` (hls4ml's default C-simulation layout), not
compiled in: with every weight a compile-time constant g++ -O3 specialises each multiplication, which made the
QKeras jet tagger's ``<project>.cpp`` take 15.7 s of CPU instead of 3.8 s (same sources otherwise, measured
here). hls4ml's build_lib.sh bakes the absolute weights folder into the library (``-DWEIGHTS_DIR=...``);
fastml instead points ``WEIGHTS_DIR`` at ``fastml_weights_dir()`` (``BATCH_SOURCE``), the ``weights/`` folder
beside wherever the library is loaded from, so the library does not hard-code the folder it was built in:
it survives the project's move into place and the cache can share it (weights are not part of it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..._internal.compile_cache import CACHE_ENV as CACHE_ENV  # the switch users set, named here as before
from ..._internal.compile_cache import OFF_VALUES, cache_root, store
from ...errors import ToolError
from . import csim_split

#: ``FASTML_CSIM_SPLIT=off`` compiles ``<project>.cpp`` as one unit (a machine whose cores are busy with other
#: work: the split costs more CPU in all, see the module docstring).
SPLIT_ENV = "FASTML_CSIM_SPLIT"
#: Bump when the way fastml compiles changes in a way the key does not capture.
_CACHE_FORMAT = 3

#: ``-O3`` (hls4ml's own level), kept by measurement. CPU seconds (user+sys) of one g++ 12 compile of the
#: 64-32-32 jet tagger's DA ``<project>.cpp`` on 2 cores: -O0 41 s, -O1 61 s (clang++ 14 -O0: 52 s); but the
#: -O0 library simulates ~100x slower (ap_types operators are not inlined: under 100 events/s under load
#: vs thousands at -O3), which costs more in verification than it saves in compiling. -O1's simulation
#: speed is not measured yet. ``-ftime-report`` at -O0: overload resolution 47 %, template instantiation 43 %.
OPT_LEVEL = "-O3"
#: Let g++'s garbage collector run rarely: at -O0 41 s -> 32.5 s CPU (-21 %), peak 2.9 GB instead of 1.1 GB.
GCC_GC_PARAMS = ("--param", "ggc-min-expand=400", "--param", "ggc-min-heapsize=2097152")

#: A loop over hls4ml's per-event bridge function, so that a whole batch is one call from Python
#: (hls4ml's own ``predict`` calls the library once per event from a Python loop). ``FASTML_TOP`` is
#: hls4ml's ``<project>_float`` bridge function; the loop adds no arithmetic of its own.
BATCH_SOURCE = """\
#include <cstddef>
#include <dlfcn.h>
#include <string>
extern "C" void FASTML_TOP(float *x, float *y);
extern "C" void fastml_predict_float(float *x, float *y, std::size_t n, std::size_t n_in, std::size_t n_out) {
    for (std::size_t i = 0; i < n; ++i) FASTML_TOP(x + i * n_in, y + i * n_out);
}
// hls4ml's WEIGHTS_DIR: the weights/ folder beside this library (firmware/<project>-<stamp>.so)
extern "C" const char *fastml_weights_dir() {
    static std::string dir;
    if (dir.empty()) {
        Dl_info info;
        std::string lib = dladdr((void *)&fastml_weights_dir, &info) && info.dli_fname ? info.dli_fname : "";
        dir = lib.substr(0, lib.rfind('/') + 1) + "weights";
    }
    return dir.c_str();
}
"""
#: Declares ``fastml_weights_dir`` in hls4ml's translation units (``-include``), where ``WEIGHTS_DIR`` calls it.
WEIGHTS_DIR_HEADER = 'extern "C" const char *fastml_weights_dir();\n'
WEIGHTS_DIR_DEFINE = "-DWEIGHTS_DIR=fastml_weights_dir()"


@dataclass
class CsimBuild:
    """A compiled C-simulation library: where it is, how it was obtained, and what went into its key."""

    library: Path
    key: str
    cache_hit: bool
    compile_s: float
    compiler: str
    flags: list[str] = field(default_factory=list)
    cache_dir: Path | None = None
    #: Translation units hls4ml's ``<project>.cpp`` was compiled as: 1 as generated, n > 1 split
    #: (``fastml.csim_split``); ``units_note`` says why (e.g. why a split fell back to one unit).
    units: int = 1
    units_note: str = ""


def _compiler() -> str:
    """The C++ compiler hls4ml's build_lib.sh uses (``g++``); ``ToolError`` when it is missing."""
    found = shutil.which("g++")
    if found is None:
        raise ToolError("g++ not found on PATH (the hls4ml C-simulation is compiled with it): apt-get install g++")
    return found


def _accepts(cxx: str, flag: str) -> bool:
    res = subprocess.run([cxx, "-Werror", "-fsyntax-only", flag, "-xc++", "-", "-o", os.devnull], input="",
                         capture_output=True, text=True)
    return res.returncode == 0


@functools.lru_cache(maxsize=4)
def _compiler_setup(cxx: str) -> tuple[str, tuple[str, ...]]:
    """``(identity, flags)``: the compiler's version line and path, and the flags for the C-simulation.

    The language standard and ``-fno-gnu-unique`` follow hls4ml's build_lib.sh (C++23 when supported,
    else C++11; ``-fno-gnu-unique`` so that a rebuilt library can be reloaded in the same process).
    """
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    identity = f"{os.path.realpath(cxx)} {version[0] if version else '?'}"
    flags = [OPT_LEVEL, "-fPIC", "-std=c++23" if _accepts(cxx, "-std=c++23") else "-std=c++11"]
    if _accepts(cxx, "-fno-gnu-unique"):
        flags.append("-fno-gnu-unique")
    if "GCC" in " ".join(version) or "g++" in " ".join(version):
        flags.extend(GCC_GC_PARAMS)
    return identity, tuple(flags)


def _sources(firmware_dir: Path, project: str) -> list[Path]:
    """Every file the compile can read: the bridge and everything under ``firmware/`` except build outputs."""
    files = [firmware_dir / f"{project}_bridge.cpp"]
    files += sorted(p for p in (firmware_dir / "firmware").rglob("*")
                    if p.is_file() and p.suffix not in (".so", ".o", ".txt"))
    return files


def cache_key(firmware_dir: Path, project: str, identity: str, flags: tuple[str, ...], split: bool = True) -> str:
    """SHA-256 over the sources' relative paths and bytes, the batch loop, the compiler, the flags and whether
    the split (``fastml.csim_split``) may be used."""
    h = hashlib.sha256(f"fastml-csim {_CACHE_FORMAT}\n{identity}\n{' '.join(flags)}\n{project}\n".encode())
    if not split:
        h.update(b"one unit\n")
    h.update(BATCH_SOURCE.encode() + WEIGHTS_DIR_HEADER.encode() + WEIGHTS_DIR_DEFINE.encode())
    for f in _sources(firmware_dir, project):
        rel = f.relative_to(firmware_dir).as_posix().encode()
        data = f.read_bytes()
        h.update(len(rel).to_bytes(8, "little") + rel + len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _write_log(results: list[subprocess.CompletedProcess[str]], notes: list[str], out_dir: Path) -> None:
    log = "\n".join([*(f"# fastml: {n}" for n in notes),
                     *(f"$ {' '.join(r.args)}\n{r.stdout}{r.stderr}" for r in results)])
    (out_dir / "compile.log").write_text(log)


def _first_error(failed: subprocess.CompletedProcess[str], markers: tuple[str, ...] = (" error:", "Error")) -> str:
    """The first output line holding one of ``markers`` (else the exit status), at most 300 characters."""
    lines = [ln for ln in (failed.stderr or failed.stdout).splitlines() if any(m in ln for m in markers)]
    return (lines[0].strip() if lines else f"exit status {failed.returncode}")[:300]


def _compile(firmware_dir: Path, project: str, cxx: str, flags: tuple[str, ...], out_dir: Path,
             split_units: bool = True) -> tuple[Path, int, str]:
    """Compile the project's translation units and the batch loop in parallel, link into ``out_dir``.

    Returns ``(library, units, note)``: ``units`` is how many units hls4ml's ``<project>.cpp`` was compiled as
    (1: as generated; n > 1: split by ``fastml.csim_split``), ``note`` why (also the first lines of compile.log).
    A split that fails to compile or link for any reason is retried as the single unit."""
    src = firmware_dir / "firmware"
    inc = [f"-I{src / 'ap_types'}"]
    (out_dir / "fastml_batch.cpp").write_text(BATCH_SOURCE)
    (out_dir / "fastml_weights_dir.h").write_text(WEIGHTS_DIR_HEADER)
    weights = [WEIGHTS_DIR_DEFINE, "-include", str(out_dir / "fastml_weights_dir.h")]
    main = (src / f"{project}.cpp", out_dir / f"{project}.o", weights)
    common = [(firmware_dir / f"{project}_bridge.cpp", out_dir / f"{project}_bridge.o", weights),
              (out_dir / "fastml_batch.cpp", out_dir / "fastml_batch.o", [f"-DFASTML_TOP={project}_float"])]
    try:
        split, why = csim_split.plan(src, project) if split_units else (None, "split not asked for")
    except Exception as err:  # a parser surprise must never stop a build: compile as generated
        split, why = None, f"split plan failed: {type(err).__name__}: {err}"
    project_units = [main]
    if split is not None:
        (out_dir / "fastml_kernels_extern.h").write_text(split.extern_header())
        # -iquote: the extern header (in out_dir) includes the project's headers from firmware/
        project_units = [(main[0], main[1], [*weights, "-iquote", str(src),
                                             "-include", str(out_dir / "fastml_kernels_extern.h")])]
        for k in range(1, split.kernel_units + 1):
            (out_dir / f"fastml_kernels_{k}.cpp").write_text(split.kernel_source(k))
            # the kernel units include the project's headers as <project>.cpp does ("..." from firmware/)
            project_units.append((out_dir / f"fastml_kernels_{k}.cpp", out_dir / f"fastml_kernels_{k}.o",
                                  [*weights, "-iquote", str(src)]))
    notes = [f"split: {len(project_units)} units ({why})" if split is not None else f"units: 1 ({why})"]

    def compile_all(units: list[tuple[Path, Path, list[str]]]) -> list[subprocess.CompletedProcess[str]]:
        cmds = [[cxx, *flags, *inc, *extra, "-c", str(s), "-o", str(o)] for s, o, extra in units]
        # Threads only wait on the compilers; the work runs in the g++ processes, which share the cores.
        with ThreadPoolExecutor(max_workers=len(cmds)) as pool:
            return list(pool.map(lambda c: _run(c, firmware_dir), cmds))

    def attempt(units: list[tuple[Path, Path, list[str]]], link: list[tuple[Path, Path, list[str]]]
                ) -> list[subprocess.CompletedProcess[str]]:
        done = compile_all(units)
        if all(r.returncode == 0 for r in done):
            done.append(_run([cxx, *flags, "-shared", *(str(o) for _, o, _ in link), "-o", str(lib), "-ldl"],
                             firmware_dir))
        return done

    lib = out_dir / "csim.so"
    results = attempt(common + project_units, common + project_units)
    failed = next((r for r in results if r.returncode != 0), None)
    if failed is not None and split is not None and all(r.returncode == 0 for r in results[:len(common)]):
        # the split failed (a unit or the link): the generated sources as one unit decide what happens
        # "definition": the linker's "multiple definition of ..." names the symbol; its "error:" line does not
        why_failed = _first_error(failed, (" error:", "Error", "definition"))
        notes.append(f"units: 1 (the split failed: {why_failed})")
        for _, obj, _ in project_units:
            obj.unlink(missing_ok=True)
        project_units = [main]
        retry = attempt([main], common + project_units)
        results += retry
        failed = next((r for r in retry if r.returncode != 0), None)
    _write_log(results, notes, out_dir)
    if failed is not None:
        raise ToolError(f"hls4ml C-simulation compile failed in {firmware_dir}: {_first_error(failed)}")
    for _, obj, _ in common + project_units:
        obj.unlink(missing_ok=True)
    return lib, len(project_units), notes[-1]


def build_csim(firmware_dir: Path, project: str, library: Path, split: bool | None = None) -> CsimBuild:
    """Compile (or fetch from the cache) the C-simulation of the hls4ml project in ``firmware_dir``.

    ``library`` is where the compiled shared library must end up (hls4ml's ``firmware/<project>-<stamp>.so``);
    it is a private copy, so the project stays usable when the cache is cleared. Raises ``ToolError`` with
    the compiler's first error line when the sources do not compile. ``split=False`` compiles
    ``<project>.cpp`` as one unit (the benchmark's comparison), ``True`` lets ``fastml.csim_split`` decide;
    ``None``: ``True`` unless ``FASTML_CSIM_SPLIT`` is off/0/false/no.
    """
    t0 = time.perf_counter()
    if split is None:
        split = os.environ.get(SPLIT_ENV, "").strip().lower() not in OFF_VALUES
    # absolute: the compilers run inside firmware_dir, and `fastml build` passes paths relative to the
    # user's working directory (firmware.output_dir defaults to hls_projects/)
    firmware_dir, library = Path(firmware_dir).absolute(), Path(library).absolute()
    cxx = _compiler()
    identity, flags = _compiler_setup(cxx)
    key = cache_key(firmware_dir, project, identity, flags, split)
    root = cache_root()
    entry = root / key if root is not None else None
    hit = entry is not None and (entry / "meta.json").is_file() and (entry / "csim.so").is_file()
    units, units_note = 1, ""
    if hit:
        assert entry is not None
        shutil.copyfile(entry / "csim.so", library)
        os.utime(entry)  # recently used: pruned last
        try:
            meta = json.loads((entry / "meta.json").read_text())
            units, units_note = int(meta.get("units", 1)), str(meta.get("units_note", ""))
        except (OSError, ValueError):
            pass  # the library is what matters; the record of how it was compiled is informative
    else:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        else:
            work = Path(tempfile.mkdtemp(prefix="fastml-csim-"))
        try:
            lib, units, units_note = _compile(firmware_dir, project, cxx, flags, work, split)
            shutil.copyfile(lib, library)
            if entry is not None and store(work, entry, {"project": project, "compiler": identity, "flags": list(flags),
                                                         "units": units, "units_note": units_note}):
                work = None  # type: ignore[assignment]
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
    return CsimBuild(library=library, key=key, cache_hit=hit, compile_s=time.perf_counter() - t0,
                     compiler=identity, flags=list(flags), cache_dir=entry, units=units, units_note=units_note)
