"""The C-simulation compile cache (fastml.backends.hls4ml.csim_cache): hits only on byte-identical sources, safe when
builds race, can be switched off, and a cached hls4ml C-simulation is still bit-exact."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastml.backends.hls4ml import csim_cache, csim_split
from fastml.backends.hls4ml.csim_cache import build_csim
from fastml.errors import ToolError

#: A two-output "project" laid out like hls4ml's: firmware/<p>.cpp, <p>_bridge.cpp with <p>_float.
_TOY_CPP = '#include "toy.h"\nvoid toy(float *x, float *y) { y[0] = x[0] + x[1]; y[1] = 2 * x[0]; }\n'


def _toy_project(root: Path, body: str = _TOY_CPP) -> Path:
    (root / "firmware" / "ap_types").mkdir(parents=True)
    (root / "firmware" / "toy.h").write_text("void toy(float *x, float *y);\n")
    (root / "firmware" / "toy.cpp").write_text(body)
    (root / "toy_bridge.cpp").write_text('#include "firmware/toy.h"\n'
                                         'extern "C" void toy_float(float *x, float *y) { toy(x, y); }\n')
    return root


def _run(library: Path, x: np.ndarray) -> np.ndarray:
    fn = ctypes.CDLL(str(library)).fastml_predict_float
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
    xf = np.ascontiguousarray(x, dtype=np.float32)
    y = np.zeros((len(xf), 2), np.float32)
    fn(xf.ctypes.data, y.ctypes.data, len(xf), 2, 2)
    return y


X = np.array([[1.0, 2.0], [-3.0, 0.5], [0.25, 0.25]], np.float32)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(csim_cache.CACHE_ENV, str(root))
    return root


def test_identical_sources_hit_the_cache_from_another_folder(tmp_path: Path, cache: Path) -> None:
    a = _toy_project(tmp_path / "a")
    first = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    b = _toy_project(tmp_path / "b")  # same bytes, another place (builds stage in random temp folders)
    second = build_csim(b, "toy", b / "firmware" / "toy-2.so")
    assert not first.cache_hit and second.cache_hit
    assert first.key == second.key and second.cache_dir == cache / first.key
    shutil.rmtree(cache)  # the project holds its own copy: clearing the cache does not break it
    for build in (first, second):
        np.testing.assert_array_equal(_run(build.library, X), np.stack([X[:, 0] + X[:, 1], 2 * X[:, 0]], 1))


_WEIGHTS_CPP = ('#include "toy.h"\n#include <fstream>\n#include <string>\n'
                'void toy(float *x, float *y) {\n'
                '    static float k = 0; static bool loaded = false;  // hls4ml loads weights once, like this\n'
                '    if (!loaded) { std::ifstream f(std::string(WEIGHTS_DIR) + "/k.txt"); f >> k; loaded = true; }\n'
                '    y[0] = k * x[0]; y[1] = k;\n}\n')


def test_weights_are_read_beside_the_library_wherever_the_project_moved(tmp_path: Path, cache: Path) -> None:
    """hls4ml's WEIGHTS_DIR is the weights/ folder beside the loaded library, not the folder it was built in:
    the project is built in a staging folder and moved into place."""
    staging = _toy_project(tmp_path / "staging", _WEIGHTS_CPP)
    (staging / "firmware" / "weights").mkdir()
    (staging / "firmware" / "weights" / "k.txt").write_text("3\n")
    build_csim(staging, "toy", staging / "firmware" / "toy-1.so")
    final = staging.rename(tmp_path / "final")
    (final / "firmware" / "weights" / "k.txt").write_text("5\n")  # a different value: proves which file is read
    np.testing.assert_array_equal(_run(final / "firmware" / "toy-1.so", X), np.stack([5 * X[:, 0], [5.0] * 3], 1))


def test_a_project_given_relative_to_the_working_directory_compiles(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fastml build` (and `make build`) pass hls_projects/... relative to where the user runs it."""
    _toy_project(tmp_path / "hls_projects" / "toy")
    monkeypatch.chdir(tmp_path)
    build = build_csim(Path("hls_projects/toy"), "toy", Path("hls_projects/toy/firmware/toy-1.so"))
    assert build.library.is_absolute() and build.library.is_file()
    np.testing.assert_array_equal(_run(build.library, X)[:, 0], X[:, 0] + X[:, 1])


def test_changed_source_misses_and_runs_the_new_code(tmp_path: Path, cache: Path) -> None:
    a = _toy_project(tmp_path / "a")
    old = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    b = _toy_project(tmp_path / "b", _TOY_CPP.replace("x[0] + x[1]", "x[0] - x[1]"))
    new = build_csim(b, "toy", b / "firmware" / "toy-2.so")
    assert not new.cache_hit and new.key != old.key
    np.testing.assert_array_equal(_run(new.library, X)[:, 0], X[:, 0] - X[:, 1])
    assert sorted(p.name for p in cache.iterdir()) == sorted([old.key, new.key])


def test_cache_can_be_switched_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(csim_cache.CACHE_ENV, "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a = _toy_project(tmp_path / "a")
    builds = [build_csim(a, "toy", a / "firmware" / f"toy-{i}.so") for i in range(2)]
    assert [b.cache_hit for b in builds] == [False, False] and builds[0].cache_dir is None
    assert not (tmp_path / "xdg").exists()
    np.testing.assert_array_equal(_run(builds[1].library, X)[:, 1], 2 * X[:, 0])


def test_concurrent_builds_of_one_key_leave_one_complete_entry(tmp_path: Path, cache: Path) -> None:
    projects = [_toy_project(tmp_path / f"p{i}") for i in range(3)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        builds = list(pool.map(lambda p: build_csim(p, "toy", p / "firmware" / "toy-x.so"), projects))
    assert len({b.key for b in builds}) == 1
    assert [p.name for p in cache.iterdir()] == [builds[0].key]  # no leftover temporary folders
    assert (cache / builds[0].key / "meta.json").is_file()
    for b in builds:
        np.testing.assert_array_equal(_run(b.library, X)[:, 0], X[:, 0] + X[:, 1])


def test_compile_error_names_the_error_and_stores_nothing(tmp_path: Path, cache: Path) -> None:
    a = _toy_project(tmp_path / "a", "void toy(float *x, float *y) { y[0] = undefined_name; }\n")
    with pytest.raises(ToolError, match=r"C-simulation compile failed.*undefined_name"):
        build_csim(a, "toy", a / "firmware" / "toy-1.so")
    assert list(cache.iterdir()) == []  # the failed attempt's temporary folder is gone too


#: A project laid out like hls4ml's DA output: kernels as templates in nnet_utils/nnet_code_gen.h, instantiated
#: from parameters.h (`da_kernel = nnet::NAME<A, accum_t>` in a config struct) and from <p>.cpp
#: (`nnet::NAME<A, B>(...)`); parameters.h includes a weights header that *defines* an array, as hls4ml's do.
_DA_CODE_GEN = """#ifndef NNET_CODE_GEN_H_
#define NNET_CODE_GEN_H_
namespace nnet {
template <typename inp_t, typename out_t>
void einsum_3_da_0_of_1(inp_t model_inp[2], out_t model_out[2]) {
    model_out[0] = model_inp[0] + model_inp[1];
    model_out[1] = model_inp[0] * 2;
}
template <typename inp_t, typename out_t>
void einsum_dense3_da_kernel(
    inp_t inp_tpose[2],
    out_t out_tpose[2],
    int l0
) {
    einsum_3_da_0_of_1(&inp_tpose[l0 * 2], &out_tpose[l0 * 2]);
}
template <typename inp_t, typename out_t>
void dense_da_5(inp_t model_inp[2], out_t model_out[2]) {
    model_out[0] = model_inp[0] - 1;
    model_out[1] = model_inp[1] * model_inp[0];
}
}
#endif
"""
_DA_PARAMETERS = """#ifndef PARAMETERS_H_
#define PARAMETERS_H_
#include "nnet_utils/nnet_code_gen.h"
#include "weights/w3.h"
struct config3 {
    typedef acc_t accum_t;
    constexpr static auto da_kernel = nnet::einsum_dense3_da_kernel<in_t, accum_t>;
};
#endif
"""
_DA_CPP = """#include "toy.h"
#include "parameters.h"
void toy(float *x, float *y) {
    in_t a[2] = {x[0], x[1]};
    acc_t b[2];
    result_t c[2];
    config3::da_kernel(a, b, 0);
    nnet::dense_da_5<acc_t, result_t>(b, c);
    y[0] = c[0] + w3[0];
    y[1] = c[1];
}
"""


def _da_project(root: Path, main: str = _DA_CPP, code_gen: str = _DA_CODE_GEN) -> Path:
    _toy_project(root, main)
    fw = root / "firmware"
    (fw / "defines.h").write_text("#ifndef DEFINES_H_\n#define DEFINES_H_\ntypedef float in_t;\n"
                                  "typedef double acc_t;\ntypedef float result_t;\n#endif\n")
    (fw / "toy.h").write_text('#include "defines.h"\nvoid toy(float *x, float *y);\n')
    (fw / "nnet_utils").mkdir()
    (fw / "nnet_utils" / "nnet_code_gen.h").write_text(code_gen)
    (fw / "parameters.h").write_text(_DA_PARAMETERS)
    (fw / "weights").mkdir()
    (fw / "weights" / "w3.h").write_text("float w3[2] = {0.5f, 0.0f};\n")  # a definition: one unit only
    return root


def _da_expected(x: np.ndarray) -> np.ndarray:
    """The toy's arithmetic, C++'s types: float sums stored as acc_t (double), results as float."""
    b0, b1 = (x[:, 0] + x[:, 1]).astype(np.float64), (2 * x[:, 0]).astype(np.float64)
    return np.stack([(b0 - 1).astype(np.float32) + np.float32(0.5), (b1 * b0).astype(np.float32)], 1)


@pytest.fixture
def split_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the planner split the toy kernels (a few lines each) as it would a real model's, on any machine."""
    for name in ("HEADER_COST", "MAIN_COST", "BRIDGE_COST", "KERNEL_UNIT_COST"):
        monkeypatch.setattr(csim_split, name, 0)
    monkeypatch.setattr(csim_split, "usable_cores", lambda: 2)


def test_da_kernels_are_found_with_their_declarators(tmp_path: Path) -> None:
    insts, prologue = csim_split.find_instantiations(_da_project(tmp_path / "p") / "firmware", "toy")
    assert sorted(i.declarator for i in insts) == [
        "void nnet::dense_da_5<acc_t, result_t>(acc_t*, result_t*)",
        "void nnet::einsum_dense3_da_kernel<in_t, acc_t>(in_t*, acc_t*, int)"]  # accum_t: config3's typedef
    assert '#include "nnet_utils/nnet_code_gen.h"' in prologue and "weights/" not in prologue
    cost = {i.function: i.cost for i in insts}
    assert cost["einsum_dense3_da_kernel"] > cost["dense_da_5"]  # its own lines plus einsum_3_da_0_of_1's


def test_split_compile_matches_one_unit(tmp_path: Path, cache: Path, split_anything: None) -> None:
    a = _da_project(tmp_path / "a")
    split = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    one = build_csim(a, "toy", a / "firmware" / "toy-2.so", split=False)
    assert split.units == 2 and split.units_note.startswith("split: 2 units"), split.units_note
    assert one.units == 1 and split.key != one.key
    x = np.random.default_rng(0).normal(0, 3, (64, 2)).astype(np.float32)
    np.testing.assert_array_equal(_run(split.library, x), _run(one.library, x))
    np.testing.assert_array_equal(_run(split.library, x), _da_expected(x))
    again = build_csim(_da_project(tmp_path / "b"), "toy", tmp_path / "b" / "firmware" / "toy-3.so")
    assert again.cache_hit and again.units == 2  # the cache entry remembers how it was compiled


def test_split_can_be_switched_off(tmp_path: Path, cache: Path, split_anything: None,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(csim_cache.SPLIT_ENV, "off")
    a = _da_project(tmp_path / "a")
    build = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    assert build.units == 1 and build.units_note == "units: 1 (split not asked for)"
    np.testing.assert_array_equal(_run(build.library, X), _da_expected(X))


def test_main_unit_leaves_the_moved_kernels_undefined(tmp_path: Path, split_anything: None) -> None:
    fw = _da_project(tmp_path / "p") / "firmware"
    plan, _ = csim_split.plan(fw, "toy")
    assert plan is not None and plan.moved
    (tmp_path / "extern.h").write_text(plan.extern_header())
    (tmp_path / "k1.cpp").write_text(plan.kernel_source(1))
    cxx = shutil.which("g++") or "g++"
    for src, obj, extra in ((fw / "toy.cpp", "main.o", ["-include", str(tmp_path / "extern.h")]),
                            (tmp_path / "k1.cpp", "k1.o", [])):
        subprocess.run([cxx, "-O3", "-c", "-iquote", str(fw), *extra, str(src), "-o", str(tmp_path / obj)],
                       check=True, capture_output=True)

    def symbols(obj: str) -> dict[str, str]:
        """``{demangled name: nm type}``, e.g. ``U`` undefined, ``W`` weak (a template instantiation)."""
        out = subprocess.run(["nm", "-C", str(tmp_path / obj)], capture_output=True, text=True, check=True).stdout
        found = (re.match(r"\s*(?:[0-9a-f]+\s+)?([A-Za-z])\s+(.*)$", ln) for ln in out.splitlines())
        return {m.group(2): m.group(1) for m in found if m is not None and "nnet::" in m.group(2)}

    main, kernels = symbols("main.o"), symbols("k1.o")
    for inst in plan.moved:
        name = next(s for s in main if s.startswith(f"void nnet::{inst.function}<"))
        assert main[name] == "U" and kernels[name] in ("T", "W"), (name, main[name], kernels.get(name))


def test_project_without_recognised_kernels_is_one_unit(tmp_path: Path, cache: Path) -> None:
    a = _toy_project(tmp_path / "a")  # no nnet_code_gen.h at all
    build = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    assert build.units == 1 and "no generated DA kernels" in build.units_note
    assert "units: 1" in (cache / build.key / "compile.log").read_text()


def test_a_kernel_unit_that_fails_to_compile_falls_back_to_one_unit(
        tmp_path: Path, cache: Path, split_anything: None) -> None:
    """dense_da_5 uses a macro <p>.cpp defines before including parameters.h: the kernel unit, which includes
    only the headers, cannot compile it. The build still succeeds, as one unit, and says why."""
    a = _da_project(tmp_path / "a", _DA_CPP.replace('#include "parameters.h"', '#define KERNEL_OFFSET 1\n'
                                                    '#include "parameters.h"'),
                    _DA_CODE_GEN.replace("model_inp[0] - 1", "model_inp[0] - KERNEL_OFFSET"))
    build = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    assert build.units == 1 and "split failed" in build.units_note and "KERNEL_OFFSET" in build.units_note
    x = np.random.default_rng(1).normal(0, 3, (16, 2)).astype(np.float32)
    np.testing.assert_array_equal(_run(build.library, x), _da_expected(x))
    log = (cache / build.key / "compile.log").read_text()
    assert "split: 2 units" in log and "split failed" in log


def test_a_split_that_fails_to_link_falls_back_to_one_unit(
        tmp_path: Path, cache: Path, split_anything: None) -> None:
    """A header parameters.h includes (not under weights/) defines a variable: every unit that includes it
    defines it again, so the split does not link. One unit does."""
    a = _da_project(tmp_path / "a", code_gen=_DA_CODE_GEN.replace("namespace nnet {", "int toy_global = 1;\n"
                                                                   "namespace nnet {"))
    build = build_csim(a, "toy", a / "firmware" / "toy-1.so")
    assert build.units == 1 and "split failed" in build.units_note and "toy_global" in build.units_note
    np.testing.assert_array_equal(_run(build.library, X), _da_expected(X))
