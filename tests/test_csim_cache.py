"""The C-simulation compile cache (fastml.csim_cache): hits only on byte-identical sources, safe when
builds race, can be switched off, and a cached hls4ml C-simulation is still bit-exact."""

from __future__ import annotations

import ctypes
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from fastml import csim_cache
from fastml.csim_cache import build_csim
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


def test_cached_hls4ml_csim_is_bit_exact(quick_jet_build) -> None:
    """Re-converting the quick build's model gives byte-identical sources: the library comes from the
    cache the build filled, and it still reproduces the quantised model exactly."""
    if csim_cache.cache_root() is None:
        pytest.skip(f"{csim_cache.CACHE_ENV} switches the cache off in this environment")
    import keras

    from fastml.backends import hls4ml_backend
    from fastml.config import project_config
    from fastml.models import TrainedModel
    from fastml.models.network import logits_fn
    from fastml.verification import bit_exact_mismatches

    project, _ = quick_jet_build
    model = keras.models.load_model(project / "model" / "model.keras", compile=False)
    events = np.load(project / "model" / "verify_inputs.npz")
    trained = TrainedModel(kind="mlp", model=model, predict_quantized=logits_fn(model), predict_float=None,
                           n_classes=int(model.output_shape[-1]))
    cfg = project_config(project)
    again = hls4ml_backend.convert(trained, cfg, project.parent / "again")
    assert again.info["csim_cache"] == "hit"
    out = again.simulators["csim"](events["x"])
    assert bit_exact_mismatches(events["y_ref"], out) == (0, None)
    assert bit_exact_mismatches(trained.predict_quantized(events["x"]), out) == (0, None)
