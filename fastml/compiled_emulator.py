"""da4ml's traced logic compiled to plain integer C++: a bit-exact emulator at millions of events per second.

da4ml emulates a traced model (``CombLogic``) with its DAIS interpreter, which decodes every operation for
every event (~10 ns per operation). This module writes the operation list out as straight-line C++ instead,
with the events of a block as the inner loop of each operation (``for j in block: s[a][j] = s[b][j] + ...``),
so g++ vectorises across events and nothing is decoded at run time. Values are ``int64`` in units of each
operation's own LSB, exactly as the interpreter keeps them: every operation below mirrors the interpreter's
integer arithmetic (shift-add, truncating quantise with wrap-around, relu, constants, MSB mux, multiply,
lookup table), and operations the generator does not know raise ``UnsupportedLogic`` (never a guess).

Operation results live in slots reused once a value's last reader has run (liveness), so a block's working
set stays in cache. Blocks run in parallel with OpenMP. The compiled library is cached by content hash in
fastml's compile cache (``fastml.csim_cache``: same folder, same ``FASTML_CSIM_CACHE`` switch, same LRU).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import csim_cache
from .errors import ToolError

#: Events per block: the inner loop of every operation. 64 int64 values = 512 B per slot, so the slots live
#: at once (a few hundred for a jet tagger's layer) stay within L2.
BLOCK = 64
#: ``-O2`` vectorises the per-operation loops (g++ 12: very-cheap cost model, enough for these loops).
#: Measured on the 16-8-5 test MLP (2 cores, load ~22, 1 thread, one run): -O2 585k events/s, -O3 446k,
#: -O2 -mavx2 1.08M (median of 4); g++ CPU 1.0 s, 1.4 s, 1.1 s (-O3 -mavx2: 30 s).
CXX_FLAGS = ("-O2", "-std=c++20", "-fPIC", "-shared", "-fopenmp", "-fno-gnu-unique")
#: Added when this CPU has AVX2 (4 int64 lanes instead of SSE2's 2); part of the cache key, so a library
#: built here is never reused on a CPU without it.
AVX2_FLAGS = ("-mavx2",)
#: Bump when the generated code changes in a way the key (which hashes the source) does not capture.
_FORMAT = 1


class UnsupportedLogic(Exception):
    """The traced logic uses an operation the generator does not implement."""


def _kif(qint: Any) -> tuple[int, int, int]:
    from da4ml.cmvm.types import _minimal_kif

    k, i, f = _minimal_kif(qint)
    return int(k), int(i), int(f)


def _wrap(expr: str, k: int, w: int) -> str:
    """Wrap ``expr`` into a ``w``-bit (signed when ``k``) integer, as the interpreter's ``quantize`` does."""
    if w <= 0:
        return "0"
    if w >= 64:
        return expr
    if k:  # sign-extend the low w bits
        return f"((i64)((u64)({expr}) << {64 - w}) >> {64 - w})"
    return f"(({expr}) & {(1 << w) - 1}LL)"


def _shift(expr: str, by: int) -> str:
    """``expr`` scaled by 2**by: a left shift for positive ``by``, an arithmetic (flooring) right shift else."""
    if by > 0:
        return f"(({expr}) << {by})"
    if by < 0:
        return f"(({expr}) >> {-by})"
    return expr


def _fits(qint_from: Any, kif_to: tuple[int, int, int]) -> bool:
    """Whether truncating a value in ``qint_from`` to ``kif_to``'s LSB always lands inside ``kif_to``'s range.

    Then the wrap-around of a quantise is a no-op and is left out (the result is identical).
    """
    k, i, f = kif_to
    step = 2.0 ** -f
    lo, hi = np.floor(qint_from.min / step), np.floor(qint_from.max / step)
    w = k + i + f
    int_min, int_max = (-(2 ** (w - 1)), 2 ** (w - 1) - 1) if k else (0, 2**w - 1)
    return bool(int_min <= lo and hi <= int_max)


def generate_source(comb: Any, block: int = BLOCK) -> str:
    """C++ source of ``fastml_emu(x, y, n, n_threads)`` computing ``comb`` bit-exactly for ``n`` events."""
    ops = comb.ops
    n_in, n_out = comb.shape
    kifs = [_kif(op.qint) for op in ops]
    ref_count = comb.ref_count
    never = len(ops)  # outputs are read after the last operation
    last_use = [-1] * len(ops)
    for i, op in enumerate(ops):
        if op.opcode == -1 or ref_count[i] == 0:
            continue
        readers = [op.id0] if op.opcode not in (5,) else []
        if op.opcode in (0, 1, 6, 7):
            readers.append(op.id1)
        if op.opcode == 6:
            readers.append(op.data & 0xFFFFFFFF)
        for r in readers:
            last_use[r] = max(last_use[r], i)
    for idx in comb.out_idxs:
        if idx >= 0:
            last_use[idx] = never

    slot: dict[int, int] = {}
    free: list[int] = []
    n_slots = 0
    body: list[str] = []
    tables: list[str] = []
    for i, op in enumerate(ops):
        if ref_count[i] == 0:
            continue  # unused: the interpreter computes it, nothing reads it
        k, ii, f = kifs[i]
        w = k + ii + f

        def v(idx: int) -> str:
            return f"s[{slot[idx]}][j]"

        code = op.opcode
        if code == -1:
            scale = float(2.0 ** (comb.inp_shifts[op.id0] + f))
            expr = _wrap(f"(i64)std::floor(xb[{op.id0} * B + j] * {scale!r})", k, w)
        elif code in (0, 1):
            f0, f1 = kifs[op.id0][2], kifs[op.id1][2]
            shift = int(op.data)
            actual = shift + f0 - f1
            v1 = f"(-{v(op.id1)})" if code == 1 else v(op.id1)
            expr = f"({v(op.id0)} + {_shift(v1, actual)})" if actual > 0 else f"({_shift(v(op.id0), -actual)} + {v1})"
            g = max(f0, f1 - shift) - f
            if g > 0:  # the interpreter only ever shifts right here
                expr = f"({expr} >> {g})"
        elif code in (2, 3, -2, -3):  # relu / quantise of x (positive code) or of -x (negative code)
            src = v(op.id0) if code > 0 else f"(-{v(op.id0)})"
            q = _shift(src, f - kifs[op.id0][2])
            qint = ops[op.id0].qint
            if code < 0:
                qint = type(qint)(-qint.max, -qint.min, qint.step)
            if not _fits(qint, kifs[i]):
                q = _wrap(q, k, w)
            expr = f"({src} < 0 ? (i64)0 : {q})" if abs(code) == 2 else q
        elif code == 4:
            expr = f"({_shift(v(op.id0), f - kifs[op.id0][2])} + {int(op.data)}LL)"
        elif code == 5:
            expr = f"{int(op.data)}LL"
        elif code == 6:
            cond_id = op.data & 0xFFFFFFFF
            mshift = (op.data >> 32) & 0xFFFFFFFF
            mshift = mshift if mshift < 0x80000000 else mshift - 0x100000000
            kc, ic, fc = kifs[cond_id]
            shift0 = f - kifs[op.id0][2]
            shift1 = f - kifs[op.id1][2] + mshift
            if shift0 != 0 and shift1 != 0:
                raise UnsupportedLogic(f"msb_mux operation {i} shifts both operands")
            wc = kc + ic + fc
            # the interpreter's MSB test: sign for signed, above 2**(w-2) for unsigned (its own rule, mirrored)
            cond = f"({v(cond_id)} < 0)" if kc else f"({v(cond_id)} > {max(1 << max(wc - 2, 0), 0)}LL)"
            a = _wrap(_shift(v(op.id0), shift0), k, w)
            b = _wrap(_shift(v(op.id1), shift1), k, w)
            expr = f"({cond} ? {a} : {b})"
        elif code == 7:
            expr = f"({v(op.id0)} * {v(op.id1)})"
        elif code == 8:
            table = comb.lookup_tables[op.data]
            pad_left = int(table._get_pads(ops[op.id0].qint)[0])
            kin, iin, fin = kifs[op.id0]
            zero = -(1 << (kin + iin + fin - 1)) if kin else 0
            name = f"T{len(tables)}"
            values = ",".join(str(int(t)) for t in np.asarray(table.table).ravel())
            tables.append(f"static const i64 {name}[] = {{{values}}};")
            expr = f"{name}[{v(op.id0)} - ({zero + pad_left}LL)]"
        else:
            raise UnsupportedLogic(f"da4ml opcode {code} (operation {i}) has no compiled form")

        # operands whose last reader is this operation give their slot back before the result takes one
        # (the loop reads and writes element j only, so the result may reuse an operand's slot)
        operand_ids = {op.id0} if code not in (-1, 5) else set()
        if code in (0, 1, 6, 7):
            operand_ids.add(op.id1)
        if code == 6:
            operand_ids.add(op.data & 0xFFFFFFFF)
        for r in operand_ids:
            if last_use[r] == i:
                free.append(slot[r])
        if free:
            slot[i] = free.pop()
        else:
            slot[i] = n_slots
            n_slots += 1
        body.append(f"    for (int j = 0; j < B; ++j) s[{slot[i]}][j] = {expr};")

    outs: list[str] = []
    for o, idx in enumerate(comb.out_idxs):
        if idx < 0:
            outs.append(f"        for (int j = 0; j < nv; ++j) Y[j * {n_out} + {o}] = 0.0;")
            continue
        scale = float(2.0 ** (comb.out_shifts[o] - kifs[idx][2]))
        sign = "-" if comb.out_negs[o] else ""
        outs.append(f"        for (int j = 0; j < nv; ++j) Y[j * {n_out} + {o}] = "
                    f"(double)({sign}s[{slot[idx]}][j]) * {scale!r};")

    n_slots = max(n_slots, 1)
    return f"""// Generated by fastml.compiled_emulator from da4ml CombLogic ({len(ops)} operations, {n_slots} slots).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
typedef int64_t i64;
typedef uint64_t u64;
constexpr int B = {block};
constexpr int N_IN = {n_in};
constexpr int N_OUT = {n_out};
constexpr int N_SLOTS = {n_slots};
{chr(10).join(tables)}

static void run_block(const double *xb, i64 (*s)[B]) {{
{chr(10).join(body)}
}}

extern "C" int fastml_emu_n_in() {{ return N_IN; }}
extern "C" int fastml_emu_n_out() {{ return N_OUT; }}

extern "C" void fastml_emu(const double *x, double *y, long n, int n_threads) {{
    long n_blocks = (n + B - 1) / B;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#pragma omp parallel num_threads(n_threads)
#endif
    {{
        std::vector<i64> slots((size_t)N_SLOTS * B);
        std::vector<double> xb((size_t)N_IN * B, 0.0);
        i64 (*s)[B] = reinterpret_cast<i64 (*)[B]>(slots.data());
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (long blk = 0; blk < n_blocks; ++blk) {{
            long i0 = blk * B;
            int nv = (int)((n - i0) < B ? (n - i0) : B);
            const double *X = x + i0 * N_IN;
            double *Y = y + i0 * N_OUT;
            // transpose the block's inputs (feature-major) so every input operation reads contiguously
            for (int j = 0; j < nv; ++j)
                for (int c = 0; c < N_IN; ++c) xb[c * B + j] = X[j * N_IN + c];
            for (int j = nv; j < B; ++j)
                for (int c = 0; c < N_IN; ++c) xb[c * B + j] = 0.0;
            run_block(xb.data(), s);
{chr(10).join(outs)}
        }}
    }}
}}
"""


@dataclass
class CompiledEmulator:
    """A loaded compiled emulator: call it with ``(n, n_in)`` inputs for ``(n, n_out)`` float64 outputs."""

    library: Path
    key: str
    cache_hit: bool
    compile_s: float
    flags: tuple[str, ...] = ()
    n_threads: int = 0  # 0: all OpenMP threads

    def __post_init__(self) -> None:
        self._lib = ctypes.CDLL(str(self.library))
        self._lib.fastml_emu.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int]
        self._lib.fastml_emu.restype = None
        self.n_in = int(self._lib.fastml_emu_n_in())
        self.n_out = int(self._lib.fastml_emu_n_out())

    def __call__(self, x: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        if data.shape[1] != self.n_in:
            raise ValueError(f"compiled emulator expects {self.n_in} inputs per event, got {data.shape[1]}")
        out = np.empty((len(data), self.n_out), dtype=np.float64)
        self._lib.fastml_emu(data.ctypes.data, out.ctypes.data, len(data), int(self.n_threads))
        return out


def compile_flags() -> tuple[str, ...]:
    """g++ flags for this machine: ``CXX_FLAGS``, plus ``AVX2_FLAGS`` where /proc/cpuinfo lists avx2."""
    try:
        flags_line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        flags_line = ""
    return (*CXX_FLAGS, *AVX2_FLAGS) if " avx2" in flags_line else tuple(CXX_FLAGS)


def _compile(source: str, out_dir: Path, cxx: str, flags: tuple[str, ...]) -> Path:
    src, lib = out_dir / "emulator.cpp", out_dir / "emulator.so"
    src.write_text(source)
    res = subprocess.run([cxx, *flags, str(src), "-o", str(lib)], capture_output=True, text=True)
    (out_dir / "compile.log").write_text(f"$ {' '.join(map(str, res.args))}\n{res.stdout}{res.stderr}")
    if res.returncode != 0:
        lines = [ln.strip() for ln in (res.stderr or res.stdout).splitlines() if " error" in ln]
        first = lines[0] if lines else f"exit status {res.returncode}"
        raise ToolError(f"compiled emulator: g++ failed: {first[:300]} (log: {out_dir / 'compile.log'})")
    return lib


def build(comb: Any, dest_dir: Path, n_threads: int = 0) -> CompiledEmulator:
    """Generate, compile (or take from the cache) and load the compiled emulator of ``comb``.

    The library is copied to ``dest_dir / "emulator.so"`` (with its source beside it). Raises
    ``UnsupportedLogic`` for an operation without a compiled form and ``ToolError`` when g++ fails.
    """
    t0 = time.perf_counter()
    source = generate_source(comb)
    cxx = shutil.which("g++")
    if cxx is None:
        raise ToolError("compiled emulator: g++ not found on PATH (apt-get install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    identity = f"{os.path.realpath(cxx)} {version[0] if version else '?'}"
    flags = compile_flags()
    key = hashlib.sha256(f"fastml-emu {_FORMAT}\n{identity}\n{' '.join(flags)}\n{source}".encode()).hexdigest()
    dest_dir.mkdir(parents=True, exist_ok=True)
    (dest_dir / "emulator.cpp").write_text(source)
    # a name per content: dlopen hands back an already loaded library for a known path, and a library in
    # use must not be overwritten in place
    library = dest_dir / f"emulator-{key[:16]}.so"
    root = csim_cache.cache_root()
    entry = root / f"emu-{key}" if root is not None else None  # shares the C-simulation cache and its LRU
    hit = entry is not None and (entry / "meta.json").is_file() and (entry / "emulator.so").is_file()
    if hit:
        assert entry is not None
        if not library.is_file():
            shutil.copyfile(entry / "emulator.so", library)
        os.utime(entry)
    else:
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-emu-", dir=root))
        try:
            shutil.copyfile(_compile(source, work, cxx, flags), library)
            if entry is not None:
                (work / "meta.json").write_text(json.dumps({"compiler": identity, "flags": list(flags),
                                                            "created": time.time()}) + "\n")
                try:
                    os.rename(work, entry)  # atomic, as in fastml.csim_cache: a complete entry or none
                except OSError:
                    pass  # a concurrent build stored the same key first
                else:
                    work = None  # type: ignore[assignment]
                    assert root is not None
                    csim_cache._prune(root, csim_cache.MAX_ENTRIES)
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
    return CompiledEmulator(library=library, key=key, cache_hit=hit, compile_s=time.perf_counter() - t0,
                            flags=flags, n_threads=n_threads)
