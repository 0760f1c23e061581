"""End-to-end build (``fastml build --quick`` through C-simulation), checked on the session's shared quick build
(``quick_jet_build`` in tests/conftest.py). The bit-exact comparison and the pipeline's safety rules are unit tests
(tests/unit/test_verify.py, tests/unit/test_pipeline.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fastml.backends.hls4ml import csim_cache, csim_split
from fastml.report import plots
from fastml.verification import bit_exact_mismatches


# ---------------------------------------------------------------- the main job, quick mode
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="not run: g++ not installed (apt-get install g++)")
def test_hls4ml_c_testbench_runs_the_verified_events_and_fails_on_a_changed_value(quick_jet_build,
                                                                                  tmp_path: Path) -> None:
    """hls4ml's tb_data/ holds the build's verification events and reference outputs; the checking copy of its
    <project>_test.cpp, compiled with g++ by the command fastml writes down, says PASS on a fresh copy of the
    project, and FAIL (exit status 1) once one expected value is changed by one LSB-sized step."""
    from fastml.backends.hls4ml.testbench import gxx_command

    project, report = quick_jet_build
    n = report.verification["csim"].samples
    assert report.firmware["testbench"] == (f"firmware/tb_data: {n} events for hls4ml's jet_tagger_test.cpp; "
                                            "firmware/tb/jet_tagger_check.cpp checks them")
    saved = np.load(project / "model" / "verify_inputs.npz")
    tb_data = project / "firmware" / "tb_data"
    x = np.loadtxt(tb_data / "tb_input_features.dat", ndmin=2)
    y = np.loadtxt(tb_data / "tb_output_predictions.dat", ndmin=2)
    np.testing.assert_array_equal(x, np.asarray(saved["x"], np.float32).astype(np.float64))
    np.testing.assert_array_equal(y, np.asarray(saved["y_ref"], np.float64))

    fw = tmp_path / "jet_tagger" / "firmware"
    shutil.copytree(project / "firmware", fw, ignore=shutil.ignore_patterns("*.so", "*.o", "*.log"))
    iface = json.loads((fw / "tb" / "interface.json").read_text())
    assert iface["command"] == gxx_command("jet_tagger") and iface["events"] == n

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=fw, capture_output=True, text=True, timeout=600)

    ok = run(gxx_command("jet_tagger", str(tmp_path / "check")))  # compile and run
    verdicts = [ln for ln in ok.stdout.splitlines() if ln.startswith(("PASS: ", "FAIL: "))]
    assert ok.returncode == 0 and verdicts == [f"PASS: jet_tagger: {n} events, 0 mismatches (C simulation)"], \
        ok.stdout[-2000:] + ok.stderr[-2000:]
    assert len((fw / "tb_data" / "csim_results.log").read_text().splitlines()) == n  # hls4ml's own output, too

    lines = (fw / "tb_data" / "tb_output_predictions.dat").read_text().splitlines()
    values = lines[5].split()
    values[3] = repr(float(values[3]) + 2.0**-8)
    lines[5] = " ".join(values)
    (fw / "tb_data" / "tb_output_predictions.dat").write_text("\n".join(lines) + "\n")
    bad = run(str(tmp_path / "check"))  # run again
    assert bad.returncode == 1 and f"FAIL: jet_tagger: 1 of {n} events mismatch, {n} events read" in bad.stdout
    assert "mismatch: event 5: output 3 " in bad.stdout


@pytest.mark.slow
def test_quick_jet_build_is_bit_exact(quick_jet_build) -> None:
    _, report = quick_jet_build
    csim = report.verification["csim"]
    assert csim.samples >= 1000
    assert csim.mismatches == 0
    assert report.checks["bit_exact_csim"] == "pass"
    # identical outputs imply identical accuracy
    assert report.accuracy.firmware == report.accuracy.quantized
    assert report.accuracy.float is not None and report.accuracy.firmware > 0.4  # 5 classes: chance is 0.2
    assert set(report.auc["firmware"]) == {"g", "q", "W", "Z", "t"}
    assert report.ebops and report.ebops > 0


@pytest.mark.slow
def test_quick_build_writes_a_complete_project(quick_jet_build) -> None:
    project, report = quick_jet_build
    doc = json.loads((project / "report.json").read_text())
    for key in ("schema_version", "name", "backend", "verification", "accuracy", "latency", "resources", "timings_s"):
        assert key in doc
    assert doc["schema_version"] == 1 and doc["backend"] == "hls4ml"
    assert {"data", "train", "convert", "verify"} <= set(doc["timings_s"])
    assert "| csim | " in (project / "report.md").read_text()
    assert (project / "firmware" / "build_prj.tcl").is_file()  # ready for Vitis HLS
    assert (project / "config.yaml").is_file() and (project / "model" / "model.keras").is_file()
    saved = np.load(project / "model" / "verify_inputs.npz")
    assert saved["x"].shape[0] == report.verification["csim"].samples
    # true classes of the test-split events, so plots and notebooks need not re-read the data
    assert 0 < len(saved["labels"]) <= len(saved["x"]) and set(saved["labels"]) <= set(range(5))
    assert not list(project.parent.glob(".jet_tagger.tmp-*")), "staging folder left behind"
    hls_cfg = (project / "firmware" / "hls4ml_config.yml").read_text()
    assert ".tmp-" not in hls_cfg and str(project.resolve() / "firmware") in hls_cfg


@pytest.mark.slow
def test_reloaded_model_reproduces_reference(quick_jet_build) -> None:
    import keras

    project, _ = quick_jet_build
    saved = np.load(project / "model" / "verify_inputs.npz")
    model = keras.models.load_model(project / "model" / "model.keras", compile=False)
    out = model.predict(saved["x"][:500], verbose=0)
    assert bit_exact_mismatches(saved["y_ref"][:500], out)[0] == 0


# ---------------------------------------------------------------- the compile cache on the quick build
# (C-simulation cache unit tests: tests/unit/backends/test_hls4ml_csim_cache.py)
@pytest.mark.slow
def test_cached_hls4ml_csim_is_bit_exact(quick_jet_build) -> None:
    """Re-converting the quick build's model gives byte-identical sources: the library comes from the
    cache the build filled, and it still reproduces the quantised model exactly."""
    if csim_cache.cache_root() is None:
        pytest.skip(f"{csim_cache.CACHE_ENV} switches the cache off in this environment")
    import keras

    from fastml.backends.hls4ml import convert as hls4ml_backend
    from fastml.models import TrainedModel
    from fastml.models.network import logits_fn
    from fastml.recipe import project_config
    from fastml.verification import bit_exact_mismatches

    project, _ = quick_jet_build
    model = keras.models.load_model(project / "model" / "model.keras", compile=False)
    events = np.load(project / "model" / "verify_inputs.npz")
    trained = TrainedModel(kind="mlp", model=model, predict_quantized=logits_fn(model), predict_float=None,
                           n_classes=int(model.output_shape[-1]))
    cfg = project_config(project)
    again = hls4ml_backend.convert(trained, cfg, project.parent / "again")
    assert again.info["csim_cache"] == "hit"
    if csim_split.usable_cores() >= 2:  # the DA kernels compiled in parallel units (fastml.backends.hls4ml.csim_split)
        assert again.info["csim_units"] >= 2, again.info["csim_units_note"]
    out = again.simulators["csim"](events["x"])
    assert bit_exact_mismatches(events["y_ref"], out) == (0, None)
    assert bit_exact_mismatches(trained.predict_quantized(events["x"]), out) == (0, None)


# ---------------------------------------------------------------- the build's plots
# (plot unit tests: tests/unit/report/test_report_plots.py)
@pytest.mark.slow
def test_save_build_plots_on_quick_build(quick_jet_build, tmp_path: Path) -> None:
    import shutil

    project, report = quick_jet_build
    assert report.status == "ok"
    copy = tmp_path / project.name  # the session's project is shared: plot into a copy
    shutil.copytree(project, copy)
    written = plots.save_build_plots(copy)
    names = {p.name for p in written}
    assert {"roc.png", "bitwidths.png", "resources_by_layer.png", "training_pareto.png"} <= names
    for p in written:
        assert p.parent == copy / "plots" and p.stat().st_size > 2000
    assert json.loads((copy / "plots" / "plots.json").read_text())["plots"] == [p.name for p in written]
