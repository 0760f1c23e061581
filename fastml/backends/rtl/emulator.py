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
fastml's compile cache (``fastml._internal.compile_cache``: same folder, same ``FASTML_CSIM_CACHE`` switch, same LRU).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..._internal.compile_cache import cache_root, store
from ...errors import ToolError, UnsupportedLogic

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
_FORMAT = 2  # 2: int32 slots where every result fits


def _kif(qint: Any) -> tuple[int, int, int]:
    from da4ml.cmvm.types import _minimal_kif

    k, i, f = _minimal_kif(qint)
    return int(k), int(i), int(f)


def _wrap(expr: str, k: int, w: int, bits: int = 64) -> str:
    """Wrap ``expr`` into a ``w``-bit (signed when ``k``) integer, as the interpreter's ``quantize`` does.

    ``bits`` is the width the expression is computed in (64, or 32 on the int32 path).
    """
    if w <= 0:
        return "0"
    if w >= bits:
        return expr
    if k:  # sign-extend the low w bits
        signed, unsigned = ("i64", "u64") if bits == 64 else ("i32", "u32")
        return f"(({signed})(({unsigned})({expr}) << {bits - w}) >> {bits - w})"
    return f"(({expr}) & {(1 << w) - 1}{'LL' if bits == 64 else ''})"


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


#: int32 slots when every operation's result has a magnitude of at most this (then 8 AVX2 lanes, not 4).
I32_RESULT_BOUND = 1 << 30
#: An operation is computed in int32 when every intermediate of its expression provably stays within this.
I32_MAX = (1 << 31) - 1


def _magnitude(kif: tuple[int, int, int]) -> int:
    """Bound on ``|value|`` in LSB units of a value with this k, i, f: ``2**(i + f)`` (signed and unsigned)."""
    k, i, f = kif
    return 1 << max(i + f, 0) if k + i + f > 0 else 0


def _msb_mux_fields(op: Any) -> tuple[int, int]:
    """(condition operation, extra shift of the second operand) packed into an msb_mux operation's ``data``."""
    cond_id = op.data & 0xFFFFFFFF
    mshift = (op.data >> 32) & 0xFFFFFFFF
    return cond_id, (mshift if mshift < 0x80000000 else mshift - 0x100000000)


def _table_offset(comb: Any, op: Any, kifs: list[tuple[int, int, int]]) -> int:
    """What a lookup's index subtracts from its input: the input's lowest code plus the table's left padding."""
    kin, iin, fin = kifs[op.id0]
    zero = -(1 << (kin + iin + fin - 1)) if kin else 0
    return zero + int(comb.lookup_tables[op.data]._get_pads(comb.ops[op.id0].qint)[0])


def _int32_ok(comb: Any, i: int, kifs: list[tuple[int, int, int]], bound: list[int]) -> bool:
    """Whether operation ``i`` can be computed in int32: every intermediate of its expression (operands scaled
    by their shifts, sums, products, table indices, constants) is bounded by ``I32_MAX`` in magnitude.

    The bounds come from da4ml's own intervals (``op.qint``), the same ones the wrap-elision of ``_fits`` trusts.
    """
    op = comb.ops[i]
    code = op.opcode
    f = kifs[i][2]
    if code == -1:
        return False  # the float -> integer conversion of an arbitrary input needs 64 bits before the wrap
    if code in (0, 1):
        f0, f1 = kifs[op.id0][2], kifs[op.id1][2]
        actual = int(op.data) + f0 - f1
        total = (bound[op.id0] + (bound[op.id1] << actual) if actual > 0
                 else (bound[op.id0] << -actual) + bound[op.id1])
        return total <= I32_MAX
    if code in (2, 3, -2, -3):
        return bound[op.id0] << max(f - kifs[op.id0][2], 0) <= I32_MAX
    if code == 4:
        c = abs(int(op.data))
        return (bound[op.id0] << max(f - kifs[op.id0][2], 0)) + c <= I32_MAX
    if code == 5:
        return abs(int(op.data)) <= I32_MAX
    if code == 6:
        cond_id, mshift = _msb_mux_fields(op)
        shift0, shift1 = f - kifs[op.id0][2], f - kifs[op.id1][2] + mshift
        return (bound[cond_id] <= I32_MAX and bound[op.id0] << max(shift0, 0) <= I32_MAX
                and bound[op.id1] << max(shift1, 0) <= I32_MAX)
    if code == 7:
        return bound[op.id0] * bound[op.id1] <= I32_MAX
    if code == 8:
        table = np.asarray(comb.lookup_tables[op.data].table)
        offset = abs(_table_offset(comb, op, kifs))
        return bound[op.id0] + offset <= I32_MAX and bool(np.abs(table.astype(np.int64)).max(initial=0) <= I32_MAX)
    return False


def generate_source(comb: Any, block: int = BLOCK, allow_int32: bool = True) -> str:
    """C++ source of ``fastml_emu(x, y, n, n_threads)`` computing ``comb`` bit-exactly for ``n`` events.

    When every operation's result fits in 31 bits (``I32_RESULT_BOUND``) and ``allow_int32``, the slots are
    int32 (twice the SIMD lanes of int64) and each operation whose intermediates provably fit in int32
    (``_int32_ok``) is computed in int32; the others are computed in int64 and their (fitting) result stored.
    Otherwise every slot and operation is int64.
    """
    ops = comb.ops
    n_in, n_out = comb.shape
    kifs = [_kif(op.qint) for op in ops]
    ref_count = comb.ref_count
    live = [i for i in range(len(ops)) if ref_count[i] != 0]
    bound = [_magnitude(kif) for kif in kifs]
    int32_slots = allow_int32 and all(bound[i] <= I32_RESULT_BOUND for i in live)
    slot_type = "i32" if int32_slots else "i64"
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
    n_narrow = 0
    body: list[str] = []
    tables: list[str] = []
    for i, op in enumerate(ops):
        if ref_count[i] == 0:
            continue  # unused: the interpreter computes it, nothing reads it
        k, ii, f = kifs[i]
        w = k + ii + f
        narrow = int32_slots and _int32_ok(comb, i, kifs, bound)
        n_narrow += narrow
        bits = 32 if narrow else 64
        zero_lit = "0" if narrow else "(i64)0"

        def v(idx: int, narrow: bool = narrow) -> str:
            # int64 operations read int32 slots widened, so every intermediate is computed in 64 bits
            return f"s[{slot[idx]}][j]" if narrow or not int32_slots else f"(i64)s[{slot[idx]}][j]"

        def lit(c: int, narrow: bool = narrow) -> str:
            return f"{c}" if narrow else f"{c}LL"  # an LL literal would widen an int32 expression to int64

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
                q = _wrap(q, k, w, bits)
            expr = f"({src} < 0 ? {zero_lit} : {q})" if abs(code) == 2 else q
        elif code == 4:
            expr = f"({_shift(v(op.id0), f - kifs[op.id0][2])} + {lit(int(op.data))})"
        elif code == 5:
            expr = lit(int(op.data))
        elif code == 6:
            cond_id, mshift = _msb_mux_fields(op)
            kc, ic, fc = kifs[cond_id]
            shift0 = f - kifs[op.id0][2]
            shift1 = f - kifs[op.id1][2] + mshift
            if shift0 != 0 and shift1 != 0:
                raise UnsupportedLogic(f"msb_mux operation {i} shifts both operands")
            wc = kc + ic + fc
            # the interpreter's MSB test: sign for signed, above 2**(w-2) for unsigned (its own rule, mirrored)
            cond = f"({v(cond_id)} < 0)" if kc else f"({v(cond_id)} > {lit(max(1 << max(wc - 2, 0), 0))})"
            a = _wrap(_shift(v(op.id0), shift0), k, w, bits)
            b = _wrap(_shift(v(op.id1), shift1), k, w, bits)
            expr = f"({cond} ? {a} : {b})"
        elif code == 7:
            expr = f"({v(op.id0)} * {v(op.id1)})"
        elif code == 8:
            table = comb.lookup_tables[op.data]
            name = f"T{len(tables)}"
            values = ",".join(str(int(t)) for t in np.asarray(table.table).ravel())
            tables.append(f"static const {'i32' if narrow else 'i64'} {name}[] = {{{values}}};")
            expr = f"{name}[{v(op.id0)} - ({lit(_table_offset(comb, op, kifs))})]"
        else:
            raise UnsupportedLogic(f"da4ml opcode {code} (operation {i}) has no compiled form")
        if int32_slots and not narrow:
            expr = f"(i32)({expr})"  # computed in int64; the result itself fits (I32_RESULT_BOUND)

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
    return f"""// Generated by fastml.compiled_emulator from da4ml CombLogic ({len(ops)} operations, {len(live)} live,
// {n_slots} {slot_type} slots, {n_narrow} operations computed in int32).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif
typedef int64_t i64;
typedef uint64_t u64;
typedef int32_t i32;
typedef uint32_t u32;
typedef {slot_type} slot_t;
constexpr int B = {block};
constexpr int N_IN = {n_in};
constexpr int N_OUT = {n_out};
constexpr int N_SLOTS = {n_slots};
{chr(10).join(tables)}

static void run_block(const double *xb, slot_t (*s)[B]) {{
{chr(10).join(body)}
}}

extern "C" int fastml_emu_n_in() {{ return N_IN; }}
extern "C" int fastml_emu_n_out() {{ return N_OUT; }}
extern "C" int fastml_emu_slot_bits() {{ return (int)(8 * sizeof(slot_t)); }}

extern "C" void fastml_emu(const double *x, double *y, long n, int n_threads) {{
    long n_blocks = (n + B - 1) / B;
#ifdef _OPENMP
    if (n_threads <= 0) n_threads = omp_get_max_threads();
#pragma omp parallel num_threads(n_threads)
#endif
    {{
        std::vector<slot_t> slots((size_t)N_SLOTS * B);
        std::vector<double> xb((size_t)N_IN * B, 0.0);
        slot_t (*s)[B] = reinterpret_cast<slot_t (*)[B]>(slots.data());
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
        self.slot_bits = int(self._lib.fastml_emu_slot_bits())  # 32: the int32 path, 64: int64 slots

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


def build(comb: Any, dest_dir: Path, n_threads: int = 0, allow_int32: bool = True) -> CompiledEmulator:
    """Generate, compile (or take from the cache) and load the compiled emulator of ``comb``.

    The library is copied to ``dest_dir / "emulator.so"`` (with its source beside it). Raises
    ``UnsupportedLogic`` for an operation without a compiled form and ``ToolError`` when g++ fails.
    ``allow_int32=False`` keeps every slot int64 (the reference path the int32 one is tested against).
    """
    t0 = time.perf_counter()
    source = generate_source(comb, allow_int32=allow_int32)
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
    root = cache_root()
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
            if entry is not None and store(work, entry, {"compiler": identity, "flags": list(flags)}):
                work = None  # type: ignore[assignment]
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
    return CompiledEmulator(library=library, key=key, cache_hit=hit, compile_s=time.perf_counter() - t0,
                            flags=flags, n_threads=n_threads)
