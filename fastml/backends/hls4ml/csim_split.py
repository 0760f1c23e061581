"""Splitting hls4ml's generated C-simulation over translation units that compile in parallel.

hls4ml writes each distributed-arithmetic (DA) layer as a function template in the generated
``firmware/nnet_utils/nnet_code_gen.h`` (``einsum_dense3_da_kernel``, ``dense_da_12``, the ``*_iq`` input
quantisers, ...) and instantiates it with concrete types from ``parameters.h``
(``constexpr static auto da_kernel = nnet::einsum_dense3_da_kernel<dense_bn_0_iq_t, accum_t>;`` inside
``struct config3``) or from ``firmware/<project>.cpp`` (``nnet::dense_da_12<dense_bn_2_relu_t, result_t>(...)``).
Those instantiations are nearly all of the g++ time of ``<project>.cpp``. This module finds them and writes:

- an *extern* header, ``-include``'d into ``<project>.cpp``: ``extern template void nnet::NAME<A, B>(A*, B*);``
  for each kernel moved out, so that the main unit leaves those symbols undefined (it keeps compiling the
  rest, including its own share of the kernels: one unit fewer to pay the headers for);
- K *kernel units*, each including the same headers and holding explicit instantiations
  (``template void nnet::NAME<A, B>(A*, B*);``) of its share of the kernels.

A split costs more CPU in all than one unit (each unit parses the headers and instantiates again the ap_types
operators its kernels share: +26-65 % measured, see ``fastml.csim_cache``), so it only pays with free cores;
``plan_units`` asks for an estimated gain of ``MIN_GAIN`` before it splits.

The bodies compiled are hls4ml's own, unchanged; only the translation unit they are compiled in differs.
Nothing here edits a generated file.

Why the kernel units include ``defines.h`` and ``parameters.h``'s headers but not ``parameters.h`` itself:
``parameters.h`` *defines* the weight arrays (``weights/b3.h``: ``dense_bn_0_bias_t b3[64];``) and static
members (``config3_tpose_out::perm_strides``), so a second unit including it would not link (duplicate
symbols). A template argument named through a config struct (``accum_t`` inside ``struct config3``) is
therefore resolved to the struct's typedef target (``dense_bn_0_accum_t``, from ``defines.h``); an
instantiation whose arguments cannot be resolved to ``defines.h`` types is left to the main unit, as before.

Only functions *defined* in ``nnet_code_gen.h`` (hls4ml's generated code) are split, never the ``nnet_utils``
library templates (``relu``, ``einsum_dense``): those are instantiated with config structs from
``parameters.h``. The cost estimate of a kernel is the line count of its body plus the bodies of the
``nnet_code_gen.h`` functions it calls; see ``plan_units`` for how K and the assignment are chosen.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

#: Identifiers a template argument may use besides ``defines.h``'s typedef names (ap_types and C++ builtins).
_KNOWN_TYPE_WORDS = {"ap_fixed", "ap_ufixed", "ap_int", "ap_uint", "bool", "char", "short", "int", "long",
                     "unsigned", "signed", "float", "double", "std", "size_t", "true", "false"}
#: Costs in lines of generated kernel body, measured with g++ 12 -O3 on the 64-32-32 jet tagger (889 kernel
#: lines; CPU s, each unit alone, load 2-5): the headers alone (ap_types, nnet_utils) 3.2 s = ``HEADER_COST``;
#: the whole ``<project>.cpp`` 24.2 s, i.e. ~0.024 s a kernel line; ``<project>.cpp`` without its kernels 4.9 s
#: (``MAIN_COST``: the rest of it beyond the headers); the bridge unit 1.6 s (``BRIDGE_COST``). Split in two
#: (4 kernels kept, 3 moved) the units took 16.1 + 16.2 s: 6.9 s more than one unit, the headers again and the
#: ap_types operators both halves instantiate = ``KERNEL_UNIT_COST`` for each kernel unit.
HEADER_COST = 135
MAIN_COST = 70
BRIDGE_COST = 70
KERNEL_UNIT_COST = 290
#: Split only when the estimate is at most this fraction of one unit's (see ``plan_units``).
MIN_GAIN = 0.75

_FUNC_RE = re.compile(r"template\s*<([^<>{};]*)>\s*(?:inline\s+)?void\s+(\w+)\s*\(([^(){};]*)\)\s*\{", re.S)
_STRUCT_RE = re.compile(r"\bstruct\s+(\w+)\s*(?::[^{;]*)?\{")
_TYPEDEF_RE = re.compile(r"\btypedef\s+([^;{}]+?)\s+(\w+)\s*;")
_USING_RE = re.compile(r"\busing\s+(\w+)\s*=\s*([^;{}]+?)\s*;")
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+([<"][^">]+[">])', re.M)


@dataclass(frozen=True)
class Instantiation:
    """One explicit instantiation of a generated kernel: ``void nnet::NAME<ARGS>(PARAMS)``."""

    function: str
    args: tuple[str, ...]
    params: tuple[str, ...]
    cost: int

    @property
    def declarator(self) -> str:
        return f"void nnet::{self.function}<{', '.join(self.args)}>({', '.join(self.params)})"


@dataclass
class SplitPlan:
    """What to compile where: the headers every unit includes, the kernels ``<project>.cpp`` keeps (``units[0]``)
    and those of each kernel unit (``units[1:]``)."""

    prologue: str
    units: list[list[Instantiation]] = field(default_factory=list)

    @property
    def moved(self) -> list[Instantiation]:
        """The kernels compiled in kernel units (``units[0]`` stay in ``<project>.cpp``)."""
        return [i for unit in self.units[1:] for i in unit]

    @property
    def kernel_units(self) -> int:
        return len(self.units) - 1

    def extern_header(self) -> str:
        """``-include``'d into ``<project>.cpp``: the moved kernels are declared, not instantiated, there."""
        lines = [self.prologue, "// fastml: these hls4ml kernels are instantiated in fastml_kernels_*.cpp"]
        lines += [f"extern template {i.declarator};" for i in self.moved]
        return "\n".join(lines) + "\n"

    def kernel_source(self, unit: int) -> str:
        """Kernel unit ``unit`` (1 .. ``kernel_units``)."""
        lines = [self.prologue, "// fastml: explicit instantiations of hls4ml's generated kernels (unchanged bodies)"]
        lines += [f"template {i.declarator};" for i in self.units[unit]]
        return "\n".join(lines) + "\n"


def _matching(text: str, open_at: int, pair: str = "{}", stop: str = "") -> int | None:
    """Index just past the bracket closing the ``pair[0]`` at ``open_at``; ``None`` at a ``stop`` character first
    or at the end of ``text`` (the generated code has no brackets in strings)."""
    depth = 0
    for pos in range(open_at, len(text)):
        if text[pos] == pair[0]:
            depth += 1
        elif text[pos] == pair[1]:
            depth -= 1
            if depth == 0:
                return pos + 1
        elif text[pos] in stop:
            return None
    return None


def _matching_brace(text: str, open_at: int) -> int:
    """Index just past the ``}`` matching the ``{`` at ``open_at`` (the end of ``text`` if unmatched)."""
    end = _matching(text, open_at)
    return len(text) if end is None else end


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside ``<>``/``()``/``[]`` (``ap_fixed<16,6>, int`` -> two parts)."""
    parts, depth, start = [], 0, 0
    for pos, ch in enumerate(text):
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:pos].strip())
            start = pos + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _template_args(text: str, open_at: int) -> str | None:
    """The text between the ``<`` at ``open_at`` and its matching ``>``."""
    end = _matching(text, open_at, "<>", stop=";{}")
    return None if end is None else text[open_at + 1:end - 1]


@dataclass
class _Template:
    tparams: list[str]
    params: list[str]  # parameter types with template parameter names, arrays as pointers
    body: str


def _parse_param(param: str) -> str | None:
    """``inp_t model_inp[16]`` -> ``inp_t*``; ``input_t *inp`` -> ``input_t*``; ``int l0`` -> ``int``."""
    param = " ".join(param.split())
    m = re.fullmatch(r"(.+?)\s*\b(\w+)\s*((?:\[[^\]]*\])*)", param)
    if m is None or "=" in param:
        return None
    ptype, dims = m.group(1).replace(" *", "*").strip(), m.group(3)
    if dims.count("[") > 1:  # a multi-dimensional array parameter: not generated by hls4ml's DA code today
        return None
    return ptype + "*" if dims else ptype


def generated_templates(code_gen: str) -> dict[str, _Template]:
    """The ``void`` function templates defined in ``nnet_code_gen.h`` (a name defined twice is left out)."""
    found: dict[str, _Template] = {}
    seen: set[str] = set()
    for m in _FUNC_RE.finditer(code_gen):
        tparams = [re.findall(r"\w+", p)[-1] for p in _split_top_level(m.group(1)) if re.findall(r"\w+", p)]
        raw = _split_top_level(m.group(3))
        params = [_parse_param(p) for p in raw if p != "void"]
        name = m.group(2)
        body = code_gen[m.end() - 1:_matching_brace(code_gen, m.end() - 1)]
        if name in seen or any(p is None for p in params):
            found.pop(name, None)
        else:
            found[name] = _Template(tparams, [p for p in params if p is not None], body)
        seen.add(name)
    return found


def _cost(name: str, templates: dict[str, _Template]) -> int:
    """Lines of ``name``'s body and of every generated function it calls (each counted once)."""
    todo, done, lines = [name], set(), 0
    while todo:
        fn = todo.pop()
        if fn in done:
            continue
        done.add(fn)
        body = templates[fn].body
        lines += body.count("\n") + 1
        todo += [w for w in set(re.findall(r"\b(\w+)\s*[<(]", body)) if w in templates and w not in done]
    return lines


def _uses(text: str, templates: dict[str, _Template], aliases: dict[str, str]) -> list[tuple[str, list[str]]]:
    """``(function, [args])`` for each ``nnet::NAME<...>`` naming a generated template, args resolved."""
    uses = []
    for m in re.finditer(r"\bnnet::(\w+)\s*<", text):
        if m.group(1) not in templates:
            continue
        inner = _template_args(text, m.end() - 1)
        if inner is None:
            continue
        args = []
        for arg in _split_top_level(inner):
            for _ in range(4):  # alias chains: accum_t -> dense_bn_0_accum_t (typedef targets are resolved once)
                arg = " ".join(arg.split())
                if arg not in aliases:
                    break
                arg = aliases[arg]
            args.append(arg)
        uses.append((m.group(1), args))
    return uses


def _substitute(text: str, subst: dict[str, str]) -> str:
    """Replace whole identifiers (template parameter names) by their arguments."""
    return re.sub(r"\b\w+\b", lambda w: subst.get(w.group(0), w.group(0)), text)


def _aliases_of(body: str) -> dict[str, str]:
    found = {name: target for target, name in _TYPEDEF_RE.findall(body)}
    found.update({name: target for name, target in _USING_RE.findall(body)})
    return found


def find_instantiations(src: Path, project: str) -> tuple[list[Instantiation], str]:
    """The generated kernels ``src`` (a project's ``firmware/`` folder) instantiates, and the headers a unit
    needs to instantiate them: ``(instantiations, prologue)``. An empty list when nothing is recognised."""
    code_gen_path = src / "nnet_utils" / "nnet_code_gen.h"
    params_path, main_path, defines_path = src / "parameters.h", src / f"{project}.cpp", src / "defines.h"
    if not all(p.is_file() for p in (code_gen_path, params_path, main_path, defines_path)):
        return [], ""
    templates = generated_templates(code_gen_path.read_text(errors="replace"))
    if not templates:
        return [], ""
    params_h = params_path.read_text(errors="replace")
    known = set(_aliases_of(defines_path.read_text(errors="replace"))) | _KNOWN_TYPE_WORDS

    # every struct's own typedefs, also reachable as `configN::name`
    structs: dict[str, dict[str, str]] = {}
    spans: list[tuple[int, int, str]] = []
    for m in _STRUCT_RE.finditer(params_h):
        end = _matching_brace(params_h, m.end() - 1)
        structs[m.group(1)] = _aliases_of(params_h[m.end():end])
        spans.append((m.end(), end, m.group(1)))
    qualified = {f"{s}::{n}": t for s, names in structs.items() for n, t in names.items()}

    uses = []
    for start, end, name in spans:
        uses += _uses(params_h[start:end], templates, {**qualified, **structs[name]})
    uses += _uses(main_path.read_text(errors="replace"), templates, qualified)

    found: dict[tuple[str, tuple[str, ...]], Instantiation] = {}
    for name, args in uses:
        tmpl = templates[name]
        words = {w for a in args for w in re.findall(r"[A-Za-z_]\w*", a)}
        if len(args) != len(tmpl.tparams) or not words <= known or any("::" in a for a in args):
            continue  # a struct's template parameter, a type from parameters.h, ...: stays in the main unit
        params = tuple(_substitute(p, dict(zip(tmpl.tparams, args, strict=True))) for p in tmpl.params)
        found.setdefault((name, tuple(args)), Instantiation(name, tuple(args), params, _cost(name, templates)))
    # the headers parameters.h includes, minus its weights (definitions: a second unit would not link)
    includes = [inc for inc in _INCLUDE_RE.findall(params_h) if not inc.strip('"<>').startswith("weights/")]
    head = f'"{project}.h"' if (src / f"{project}.h").is_file() else '"defines.h"'
    prologue = "\n".join(f"#include {inc}" for inc in [head, *includes])
    return list(found.values()), prologue


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def plan_units(instantiations: list[Instantiation], cores: int) -> list[list[Instantiation]]:
    """Share the kernels among the main unit (entry 0: those it keeps instantiating itself) and K kernel units
    (entries 1..K), greedy longest-first; K = 0 .. min(cores, kernels + 1) - 1 is the one minimising the
    estimated wall time ``max(largest unit, all units' cost (bridge included) / cores)``. The main unit pays
    ``HEADER_COST + MAIN_COST`` besides its kernels, each kernel unit ``KERNEL_UNIT_COST``. A split must be
    estimated at most ``MIN_GAIN`` of one unit's time: it costs more CPU in all, which a machine busy with
    other work pays instead of gaining. ``[]``: one unit."""
    ordered = sorted(instantiations, key=lambda i: (-i.cost, i.function, i.args))
    total = sum(i.cost for i in ordered)
    one = HEADER_COST + MAIN_COST + total
    single_wall = max(one, (one + BRIDGE_COST) / cores)
    best: list[list[Instantiation]] = []
    best_wall = MIN_GAIN * single_wall
    for n in range(2, min(cores, len(ordered) + 1) + 1):
        bins: list[list[Instantiation]] = [[] for _ in range(n)]
        loads = [HEADER_COST + MAIN_COST] + [KERNEL_UNIT_COST] * (n - 1)
        for inst in ordered:
            j = loads.index(min(loads))
            bins[j].append(inst)
            loads[j] += inst.cost
        if any(not b for b in bins[1:]):
            continue
        wall = max(*loads, (sum(loads) + BRIDGE_COST) / cores)
        if wall < best_wall:
            best, best_wall = bins, wall
    return best


def plan(src: Path, project: str, cores: int | None = None) -> tuple[SplitPlan | None, str]:
    """``(plan, why)``: how to split ``src``'s C-simulation, or ``None`` and why it stays one unit."""
    instantiations, prologue = find_instantiations(src, project)
    if not instantiations:
        return None, "no generated DA kernels instantiated with defines.h types found"
    cores = cores or usable_cores()
    units = plan_units(instantiations, cores)
    if not units:
        cost = sum(i.cost for i in instantiations)
        return None, f"one unit estimated fastest ({len(instantiations)} kernels, {cost} lines, {cores} cores)"
    moved = sum(len(u) for u in units[1:])
    return SplitPlan(prologue, units), (f"{moved} of {len(instantiations)} kernels moved to {len(units) - 1} "
                                        f"kernel unit(s), {cores} cores")
