"""``fastml diagnose``: faults injected into a built project the way real ones happen are found at the right
layer with the right class of cause; a correct project shows no divergence at any layer.

The project is a tiny HGQ2 network (6 -> QDense 8 relu -> tanh lookup table -> QDense 3), written by hls4ml
once per session (no compile: diagnose compiles its own instrumented copy); each fault edits a copy of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from fastml.diagnose import diagnose  # noqa: E402
from fastml.errors import FastmlError  # noqa: E402
from fastml.verification.layers import (  # noqa: E402
    Diagnosis,
    FixedType,
    LayerDiff,
    align_to_type,
    check_consistency,
    check_trimmed_readers,
    classify,
    compare_layer,
    first_divergence,
    to_grid,
)

N_EVENTS = 400
REPO = Path(__file__).resolve().parents[2]


def _tiny_model():
    import keras
    from hgq.layers import QDense, QUnaryFunctionLUT
    from hgq.utils import trace_minmax

    keras.utils.set_random_seed(3)
    inp = keras.Input((6,), name="features")
    h = QDense(8, activation="relu", name="dense_0")(inp)
    h = QUnaryFunctionLUT("tanh", name="lut_tanh", allow_heterogeneous_table=False,
                          allow_heterogeneous_input=False)(h)
    model = keras.Model(inp, QDense(3, name="logits")(h))
    x = np.random.default_rng(0).normal(size=(N_EVENTS, 6)).astype(np.float32)
    trace_minmax(model, x, batch_size=1024)
    return model, x


def _project_skeleton(root: Path, model, x: np.ndarray, backend: str) -> None:
    (root / "model").mkdir(parents=True)
    model.save(root / "model" / "model.keras")
    y = model.predict(x, verbose=0)
    np.savez(root / "model" / "verify_inputs.npz", x=x, y_ref=y, labels=np.zeros(len(x), np.int64))
    (root / "report.json").write_text(json.dumps({"backend": backend, "name": root.name}))


@pytest.fixture(scope="session")
def tiny_hls_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hls4ml Vitis project (distributed arithmetic, io_parallel) as fastml's hls4ml backend writes it."""
    import hls4ml

    model, x = _tiny_model()
    root = tmp_path_factory.mktemp("diag") / "tiny_hls"
    _project_skeleton(root, model, x, "hls4ml")
    hls_model = hls4ml.converters.convert_from_keras_model(
        model, output_dir=str(root / "firmware"), project_name="tiny", backend="Vitis", io_type="io_parallel",
        hls_config={"Model": {"Precision": "ap_fixed<1,0>", "ReuseFactor": 1, "Strategy": "distributed_arithmetic"}})
    hls_model.write()
    return root


def _copy(project: Path, tmp_path: Path) -> Path:
    dst = tmp_path / project.name
    shutil.copytree(project, dst)
    return dst


def _edit(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replacement, text, count=1)
    assert n == 1, f"{pattern!r} not found in {path}"
    path.write_text(new)


@pytest.mark.slow
def test_correct_project_has_no_divergence_at_any_layer(tiny_hls_project: Path) -> None:
    diag = diagnose(tiny_hls_project)
    assert diag.not_run is None
    names = [ly.name for ly in diag.layers]
    assert names == ["features", "dense_0", "dense_0_relu", "lut_tanh", "logits"]
    assert all(ly.status in ("match", "trimmed") for ly in diag.layers), [(ly.name, ly.status) for ly in diag.layers]
    assert diag.layers[-1].status == "match"  # the output itself is compared exactly, never on a coarser grid
    assert diag.first_divergent_layer is None and diag.output_mismatches == 0 and not diag.diverges
    saved = json.loads((tiny_hls_project / "diagnosis.json").read_text())
    assert saved["first_divergent_layer"] is None and len(saved["layers"]) == 5
    assert "no divergence at any layer" in "\n".join(diag.lines())


@pytest.mark.slow
def test_narrowed_layer_precision_is_named_precision(tiny_hls_project: Path, tmp_path: Path) -> None:
    """A user gives dense_0's output type 4 fewer fractional bits in defines.h."""
    project = _copy(tiny_hls_project, tmp_path)
    defines = project / "firmware" / "firmware" / "defines.h"
    m = re.search(r"typedef ap_fixed<(\d+),(\d+)> dense_0_t;", defines.read_text())
    assert m is not None
    width, integer = int(m.group(1)), int(m.group(2))
    _edit(defines, r"typedef ap_fixed<\d+,\d+> dense_0_t;", f"typedef ap_fixed<{width - 4},{integer}> dense_0_t;")
    diag = diagnose(project)
    assert diag.first_divergent_layer == "dense_0"
    assert diag.cause == "precision"
    assert diag.output_mismatches and diag.output_mismatches > 0
    relu = next(ly for ly in diag.layers if ly.name == "dense_0_relu")
    assert relu.status == "diverges" and relu.mismatched_events > 0


@pytest.mark.slow
def test_out_of_range_events_expose_a_saturating_input_type(tiny_hls_project: Path, tmp_path: Path) -> None:
    """The input type saturates where the model's input quantiser wraps: invisible on the verification
    events, found as saturation at the input when events beyond the calibrated range are fed."""
    project = _copy(tiny_hls_project, tmp_path)
    defines = project / "firmware" / "firmware" / "defines.h"
    _edit(defines, r"(typedef ap_fixed<\d+,\d+,AP_RND),AP_WRAP(,0> features_t;)", r"\1,AP_SAT\2")
    assert diagnose(project, write=False).first_divergent_layer is None  # in range: still bit-exact
    x = np.load(project / "model" / "verify_inputs.npz")["x"] * 6.0
    diag = diagnose(project, x=x)
    assert diag.first_divergent_layer == "features"
    assert diag.cause == "saturation"
    first = diag.layers[0]
    assert first.worst is not None and first.worst["bits"] == FixedType.parse(first.precision or "").width
    assert all(ly.status == "diverges" for ly in diag.layers[1:3])  # and it propagates


@pytest.mark.slow
def test_perturbed_table_entry_is_named_table(tiny_hls_project: Path, tmp_path: Path) -> None:
    """One entry of the tanh lookup table (the one the events use most) is changed in the project."""
    from fastml.verification.layers import keras_layer_values
    from fastml.verification.layers import load_keras as _load_keras

    project = _copy(tiny_hls_project, tmp_path)
    x = np.load(project / "model" / "verify_inputs.npz")["x"]
    lut_in = keras_layer_values(_load_keras(project), x).values["lut_tanh_iq"]
    nonzero = lut_in[lut_in > 0]
    value = float(np.bincount(np.round(nonzero * 64).astype(int)).argmax()) / 64  # ap_ufixed<8,2>: index = v * 64
    index = round(value * 64)
    weights = project / "firmware" / "firmware" / "weights"
    table_file = next(weights.glob("table*.txt"))
    entries = table_file.read_text().replace("\n", "").split(",")
    entries[index] = f"{(float(entries[index]) + 0.25) % 1.0:.6f}"
    table_file.write_text(", ".join(e.strip() for e in entries) + "\n")
    diag = diagnose(project)
    assert diag.first_divergent_layer == "lut_tanh"
    assert diag.cause == "table"
    assert f"{value:g}" in (diag.hint or "")
    assert next(ly for ly in diag.layers if ly.name == "dense_0_relu").status == "match"


@pytest.mark.slow
def test_plot_marks_the_first_divergent_layer(tiny_hls_project: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    diag = diagnose(tiny_hls_project, write=False, events=50)
    ax = diag.plot()
    assert len(ax.patches) == len(diag.layers) and "no divergence" in ax.get_title()


def test_relative_and_moved_project_paths_are_diagnosed(tiny_hls_project: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The path as the build printed it (relative), then the same project moved: both compared, no divergence."""
    from fastml.cli import main

    (tmp_path / "a").mkdir()
    shutil.copytree(tiny_hls_project, tmp_path / "a" / "tiny_hls")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["diagnose", "tiny_hls", "--events", "100"]) == 0
    out = capsys.readouterr().out
    assert "no divergence at any layer" in out and "not run" not in out
    (tmp_path / "b").mkdir()
    shutil.move(tmp_path / "a" / "tiny_hls", tmp_path / "b" / "moved")
    # the first run's traced library has that folder's weights path compiled in, and hls4ml's C++ exits the
    # process on a missing weights file: run in a process of its own, with this checkout's fastml first
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-m", "fastml", "diagnose", "moved", "--events", "100"],
                          cwd=tmp_path / "b", env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no divergence at any layer" in proc.stdout


def test_a_comparison_that_cannot_run_exits_2_saying_why(tiny_hls_project: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from fastml.cli import main

    project = _copy(tiny_hls_project, tmp_path)
    cpp = project / "firmware" / "firmware" / "tiny.cpp"
    cpp.write_text(cpp.read_text() + "\nstatic int broken = ;\n")  # the project's C++ no longer compiles
    assert main(["diagnose", str(project), "--events", "20"]) == 2
    out = capsys.readouterr().out
    assert "not run: the traced copy" in out and "did not compile" in out and "no divergence" not in out


# ---------------------------------------------------------------------------------------------------
# Pure classification (no compiler)
# ---------------------------------------------------------------------------------------------------


def test_classify_rounding_overflow_and_value() -> None:
    t = FixedType.parse("ap_fixed<8,3>")
    assert t is not None and t.frac == 5 and t.max == 4 - 1 / 32 and t.min == -4
    ref = np.array([[0.5, 1.0, -2.0]])
    one_lsb = ref + np.array([[1 / 32, 0.0, 0.0]])
    assert compare_layer("l", "f", ref, one_lsb, t).cause == "rounding"
    wrapped = np.array([[0.5, 1.0, -2.0 + 8.0 - 8.0]])
    ref_out = np.array([[0.5, 1.0, 5.0]])  # 5.0 does not fit ap_fixed<8,3>; wrapped it is -3.0
    # holding the wrapped value is what the type does (hls4ml drops MSBs a wrapping consumer ignores): only
    # the consumer can tell whether it matters (check_trimmed_readers, _first_divergence)
    ly = compare_layer("l", "f", ref_out, np.array([[0.5, 1.0, -3.0]]), t)
    assert ly.status == "trimmed" and ly.dropped == ["MSBs"]
    ly = compare_layer("l", "f", ref_out, np.array([[0.5, 1.0, -3.0 + 1 / 32]]), t)
    assert ly.status == "diverges" and ly.cause == "overflow" and ly.worst and ly.worst["lsb_distance"] == 8 * 32 - 1
    assert ly.worst["stored_reference"] == -3.0
    assert compare_layer("l", "f", ref, wrapped, t).status == "match"
    two = np.array([[0.5, 1.0], [0.25, 0.75]])
    odd = compare_layer("l", "f", two, np.array([[0.5, 1.0 + 3 / 32], [0.25 - 5 / 32, 0.75]]), t)
    assert odd.cause == "value"
    pow2 = compare_layer("l", "f", np.array([[0.5, 1.0], [0.25, 0.75]]), np.array([[0.5, 1.5], [0.125, 0.75]]), t)
    assert pow2.cause == "accumulator"


def test_trimmed_layer_equal_on_its_grid_is_not_a_divergence() -> None:
    t = FixedType.parse("ap_fixed<8,3,AP_RND>")
    assert t is not None
    ref = np.array([[0.51, 1.02, -2.017]])
    assert compare_layer("l", "f", ref, to_grid(ref, t), t).status == "trimmed"
    ly = compare_layer("l", "f", ref, to_grid(ref, t) + 1 / 32, t)
    assert ly.status == "diverges"


def test_table_cause_needs_the_same_inputs_always_wrong() -> None:
    inputs = np.array([[0.25, 0.5], [0.25, 0.75], [0.5, 0.25]])
    ref = np.tanh(inputs)
    fw = ref.copy()
    fw[inputs == 0.25] += 0.1  # every occurrence of input 0.25 is wrong: a table entry
    diff = fw != ref
    assert classify(ref, fw, diff, None, inputs, is_table=True)[0] == "table"
    fw2 = ref.copy()
    fw2[0, 0] += 0.1  # only one of the three 0.25 inputs is wrong: not a table entry
    assert classify(ref, fw2, fw2 != ref, None, inputs, is_table=True)[0] != "table"


def test_reference_is_aligned_as_an_ap_fixed_assignment_would() -> None:
    """``align_to_type``: the type's rounding, then its overflow mode, also on grids coarser than 1 (HGQ2's
    negative fractional bits, which leave factors of two between a value and its quantised form)."""
    def aligned(values: list[float], text: str) -> list[float]:
        t = FixedType.parse(text)
        assert t is not None
        return align_to_type(np.array(values), t).tolist()

    assert aligned([4.0, -4.25, 5.3], "ap_fixed<6,3>") == [-4.0, 3.75, -2.75]  # TRN, then wrap modulo 8
    assert aligned([4.5, -0.25], "ap_ufixed<4,2>") == [0.5, 3.75]  # unsigned: modulo 4 into [0, 4)
    assert aligned([9.0, -9.0, 0.0625], "ap_fixed<6,3,AP_RND,AP_SAT>") == [3.875, -4.0, 0.125]
    assert aligned([-9.0], "ap_fixed<6,3,AP_TRN,AP_SAT_SYM>") == [-3.875]
    assert aligned([9.0, 1.0], "ap_fixed<6,3,AP_TRN,AP_SAT_ZERO>") == [0.0, 1.0]
    assert aligned([2.9, 3.0, 17.0], "ap_ufixed<3,4,AP_RND>") == [2.0, 4.0, 2.0]  # LSB 2, range [0, 16)


def _reader(step: float, span: float):
    """A rounding-down, wrapping quantiser like the per-element ones a DA kernel applies to its inputs."""
    return lambda v: np.mod(np.floor(np.asarray(v) / step) * step, span)


def test_trimming_is_harmless_only_where_the_reading_quantiser_agrees() -> None:
    t = FixedType.parse("ap_ufixed<4,2>")  # the stored type: LSB 1/4, range [0, 4)
    assert t is not None
    ref = np.array([[0.4, 1.6, 5.1]])  # the model's values: finer than t, and 5.1 beyond its range
    fw = align_to_type(ref, t)  # what a correct firmware stores: [[0.25, 1.5, 1.0]]

    def trimmed() -> LayerDiff:
        ly = compare_layer("relu", "relu", ref, fw, t)
        assert ly.status == "trimmed" and ly.dropped == ["LSBs", "MSBs"]
        return ly

    coarse = _reader(0.5, 2.0)  # keeps neither the dropped LSBs nor the dropped MSBs: provably harmless
    ly = trimmed()
    check_trimmed_readers(ly, ref, t, [("next_iq", coarse, coarse(ref))])
    assert ly.status == "trimmed" and ly.proven_by == ["next_iq"]
    fine = _reader(0.125, 2.0)  # keeps an LSB that t dropped: element 0 reaches it as 0.25 instead of 0.375
    ly = trimmed()
    check_trimmed_readers(ly, ref, t, [("next_iq", fine, fine(ref))])
    assert ly.status == "diverges" and ly.cause == "precision" and ly.mismatched_elements == 1
    assert ly.worst is not None and ly.worst["index"] == 0 and ly.worst["reader"] == "next_iq"
    wide = _reader(0.25, 8.0)  # keeps an MSB that t dropped: element 2 reaches it as 1.0 instead of 5.0
    ly = trimmed()
    check_trimmed_readers(ly, ref, t, [("next_iq", wide, wide(ref))])
    assert ly.status == "diverges" and ly.cause == "overflow" and ly.worst and ly.worst["index"] == 2
    ly = trimmed()
    check_trimmed_readers(ly, ref, t, [("next_iq", lambda v: None, coarse(ref))])  # cannot be applied exactly
    assert ly.status == "trimmed" and ly.proven_by is None


def test_a_trimmed_layer_is_blamed_for_its_reader_unless_proven_harmless() -> None:
    def diagnosed(before: LayerDiff) -> Diagnosis:
        after = LayerDiff("dense_0_relu", "relu", "diverges", 4, 10, 7, 3, "ap_ufixed<4,2>", cause="value")
        diag = Diagnosis("p", "hls4ml", "fw", "model", 10, layers=[before, after], output_mismatches=5)
        first_divergence(diag)
        return diag

    diag = diagnosed(LayerDiff("dense_0", "dense", "trimmed", 4, 10, precision="ap_fixed<6,3>",
                                      dropped=["MSBs"]))
    assert (diag.first_divergent_layer, diag.cause) == ("dense_0", "overflow") and "integer bits" in (diag.hint or "")
    diag = diagnosed(LayerDiff("dense_0", "dense", "trimmed", 4, 10, precision="ap_fixed<6,3>",
                                      dropped=["LSBs"]))
    assert (diag.first_divergent_layer, diag.cause) == ("dense_0", "precision")
    diag = diagnosed(LayerDiff("dense_0", "dense", "trimmed", 4, 10, precision="ap_fixed<6,3>",
                                      dropped=["LSBs"], proven_by=["dense_0_relu_iq"]))
    assert (diag.first_divergent_layer, diag.cause) == ("dense_0_relu", "value")


def test_outputs_that_match_overrule_a_layer_that_differs() -> None:
    """The self-consistency guard: equal outputs on every event and a layer that differs mean diagnose compared
    that layer wrongly; it is named, the firmware is not blamed, and nothing reads as a divergence."""
    def layers() -> list[LayerDiff]:
        return [LayerDiff("features", "input", "diverges", 4, 10, 7, 3, "ap_fixed<6,3>", cause="value"),
                LayerDiff("logits", "dense", "match", 3, 10)]

    diag = Diagnosis("p", "hls4ml", "fw", "model", 10, layers=layers(), output_mismatches=0, output_elements=30)
    first_divergence(diag)
    check_consistency(diag)
    assert diag.inconsistent == "features" and diag.first_divergent_layer is None and diag.cause is None
    assert not diag.diverges and diag.layers[0].status == "inconsistent"
    text = "\n".join(diag.lines())
    assert "trace inconsistent at features" in text and "first divergent" not in text and "no divergence" not in text
    differing = Diagnosis("p", "hls4ml", "fw", "model", 10, layers=layers(), output_mismatches=4, output_elements=30)
    first_divergence(differing)
    check_consistency(differing)  # the outputs differ too: a real divergence, left as it is
    assert differing.first_divergent_layer == "features" and differing.inconsistent is None and differing.diverges


def test_not_a_project_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FastmlError, match="not a fastml project"):
        diagnose(tmp_path)
    with pytest.raises(FastmlError, match="expected a project folder"):
        diagnose(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------
# rtl backend: da4ml per-layer trace, the project's saved logic at the output
# ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_rtl_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """da4ml RTL project as fastml's rtl backend writes it (trace, pipeline at cutoff 5, RTLModel.write)."""
    from da4ml.codegen import RTLModel

    from fastml._internal.da4ml import pipeline, trace_keras
    from fastml.backends.rtl.estimate import RTL_TOP

    model, x = _tiny_model()
    root = tmp_path_factory.mktemp("diag") / "tiny_rtl"
    _project_skeleton(root, model, x, "rtl")
    pipe = pipeline(trace_keras(model), 5.0)
    RTLModel(pipe, RTL_TOP, root / "firmware", flavor="verilog", latency_cutoff=5.0).write(
        metadata={"top": RTL_TOP, "latency_cutoff": 5.0})
    return root


def test_rtl_correct_project_has_no_divergence(tiny_rtl_project: Path) -> None:
    diag = diagnose(tiny_rtl_project)
    assert diag.not_run is None
    assert [ly.name for ly in diag.layers] == ["dense_0", "lut_tanh", "logits"]
    assert all(ly.status == "match" for ly in diag.layers)
    assert diag.output_mismatches == 0 and diag.first_divergent_layer is None


def test_rtl_perturbed_table_entry_in_saved_logic_is_named(tiny_rtl_project: Path, tmp_path: Path) -> None:
    """Entry 0 of the tanh table (input 0: every ReLU zero reads it) is changed in the saved pipeline."""
    project = _copy(tiny_rtl_project, tmp_path)
    path = project / "firmware" / "model" / "pipeline.json"
    data = json.loads(path.read_text())
    stage = next(k for k, st in enumerate(data[0]) if len(st) > 8 and st[8])
    data[0][stage][8][0]["table"][0] += 5
    path.write_text(json.dumps(data))
    diag = diagnose(project)
    assert diag.output_mismatches and diag.output_mismatches > 0
    assert all(ly.status == "match" for ly in diag.layers)  # the model's own trace is still right
    assert diag.first_divergent_layer == "saved logic" and diag.cause == "table"
    assert f"stage {stage} table 0 entry 0" in (diag.hint or "")


def test_conifer_per_tree_is_not_run(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    np.savez(tmp_path / "model" / "verify_inputs.npz", x=np.zeros((3, 2)))
    (tmp_path / "report.json").write_text(json.dumps({"backend": "conifer"}))
    diag = diagnose(tmp_path)
    assert diag.not_run and "per-tree" in diag.not_run and not diag.layers
    assert "not run" in "\n".join(diag.lines())
    from fastml.cli import main

    assert main(["diagnose", str(tmp_path)]) == 2  # nothing was compared: not a success


# ---------------------------------------------------------------------------------------------------
# Real builds: every shipped network recipe, and the quick jet tagger trained at several seeds
# ---------------------------------------------------------------------------------------------------

#: Events diagnosed per real build (the trace runs one event per call; the layers' types do not depend on it).
REAL_BUILD_EVENTS = 300
#: Training seeds of the quick jet tagger: each gives other per-element widths and pruned inputs.
SEEDS = (0, 1, 2)


def _network_recipes() -> list[str]:
    """The shipped build recipes whose model is a network (BDT recipes have no layers; scan recipes are not builds)."""
    import yaml

    from fastml.models import kind_of
    from fastml.recipe import load_config

    names = []
    for path in sorted((REPO / "configs").glob("*.yaml")):
        if "scan" in (yaml.safe_load(path.read_text()) or {}):
            continue  # a scan over jet_tagger.yaml variants: its points are builds of that recipe
        if kind_of(load_config(path)).family == "network":
            names.append(path.name)
    return names


NETWORK_RECIPES = _network_recipes()


@pytest.fixture(scope="session")
def diagnosable(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], Path]:
    """A copy of a shared build to diagnose (diagnose writes diagnosis.json and its trace cache into the project),
    made once per build so that its traced library is compiled once."""
    copies: dict[Path, Path] = {}

    def get(project: Path) -> Path:
        if project not in copies:
            copies[project] = tmp_path_factory.mktemp("diagnosed") / project.name
            shutil.copytree(project, copies[project], ignore=shutil.ignore_patterns("*.so", ".diagnose"))
        return copies[project]

    return get


@pytest.fixture(scope="session")
def quick_jet_at_seed(quick_jet_build, quick_recipe_build) -> Callable[[int], Path]:
    """The quick jet tagger trained at ``seed``: the session's shared build for the recipe's own seed."""
    from fastml.recipe import load_config

    recipe_seed = load_config(REPO / "configs" / "jet_tagger.yaml").train.seed

    def get(seed: int) -> Path:
        if seed == recipe_seed:
            return quick_jet_build[0]
        return quick_recipe_build("jet_tagger.yaml", train={"seed": seed})

    return get


def _assert_bit_exact_and_no_divergence(project: Path) -> Diagnosis:
    from fastml.report import load_report

    report = load_report(project)
    assert report.status == "ok" and report.verification
    assert all(level.mismatches == 0 for level in report.verification.values())  # a bit-exact build
    diag = diagnose(project, events=REAL_BUILD_EVENTS)
    rows = [(ly.name, ly.status, ly.mismatched_elements, ly.worst) for ly in diag.layers]
    assert diag.not_run is None, diag.not_run
    assert diag.output_mismatches == 0
    assert diag.inconsistent is None and diag.first_divergent_layer is None and not diag.diverges, rows
    assert diag.layers and all(ly.status in ("match", "trimmed") for ly in diag.layers), rows
    return diag


@pytest.mark.slow
@pytest.mark.parametrize("recipe", NETWORK_RECIPES)
def test_bit_exact_build_of_every_network_recipe_shows_no_divergence(
        recipe: str, quick_recipe_build, quick_jet_build, diagnosable: Callable[[Path], Path]) -> None:
    project = diagnosable(quick_jet_build[0] if recipe == "jet_tagger.yaml" else quick_recipe_build(recipe))
    if not (project / "model" / "model.keras").is_file():  # a QONNX graph: no per-layer reference to trace
        diag = diagnose(project, events=REAL_BUILD_EVENTS)
        assert diag.not_run and "no model/model.keras" in diag.not_run  # said, and the CLI exits 2
        assert diag.output_mismatches == 0 and not diag.diverges  # the traced firmware's outputs still compared
        return
    _assert_bit_exact_and_no_divergence(project)


def _da_kernels(project: Path) -> str:
    return (project / "firmware" / "firmware" / "nnet_utils" / "nnet_code_gen.h").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_quick_jet_tagger_shows_no_divergence_at_any_training_seed(
        seed: int, quick_jet_at_seed: Callable[[int], Path], diagnosable: Callable[[Path], Path]) -> None:
    """Issue 28: each seed is another valid point (other per-element widths, other pruned inputs); the DA kernels
    apply the next layer's input quantiser themselves, so each producer stores the value before it."""
    project = diagnosable(quick_jet_at_seed(seed))
    widths = set(re.findall(r"(ap_u?fixed<[^>]*>) model_inp_q_\d+ = model_inp", _da_kernels(project)))
    assert len(widths) > 1  # heterogeneous input quantisers inside the kernels: the case this test is about
    diag = _assert_bit_exact_and_no_divergence(project)
    proven = {ly.name for ly in diag.layers if ly.proven_by}
    assert proven and proven <= {"features", "dense_0_relu", "dense_1_relu", "dense_2_relu"}


@pytest.mark.slow
def test_the_seeds_include_pruned_inputs(quick_jet_at_seed: Callable[[int], Path]) -> None:
    """The seeds test above covers pruned (0-bit) inputs of a DA kernel: at least one seed has some."""
    pruned = {seed: len(re.findall(r"model_inp_q_\d+ = 0;", _da_kernels(quick_jet_at_seed(seed)))) for seed in SEEDS}
    assert any(pruned.values()), pruned


@pytest.mark.slow
def test_the_issue_28_reference_point_is_caught_as_an_inconsistent_trace(
        quick_jet_at_seed: Callable[[int], Path], diagnosable: Callable[[Path], Path],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With issue 28's comparison put back (the DA kernels' input quantisers taken as applied by the producers),
    a bit-exact build's layers differ while every output matches: the guard names the first such layer,
    blames nothing and exits 0."""
    import fastml.backends.hls4ml.diagnose as diagnose_module
    from fastml.cli import main

    project = diagnosable(quick_jet_at_seed(SEEDS[0]))
    monkeypatch.setattr(diagnose_module, "fused_input_quantisers", lambda *_: set())
    assert main(["diagnose", str(project), "--events", str(REAL_BUILD_EVENTS)]) == 0
    out = capsys.readouterr().out
    assert "trace inconsistent at features" in out and "first divergent" not in out
    saved = json.loads((project / "diagnosis.json").read_text())
    assert saved["inconsistent"] == "features" and saved["first_divergent_layer"] is None
    assert saved["output_mismatches"] == 0
    assert {ly["status"] for ly in saved["layers"]} <= {"match", "trimmed", "inconsistent"}


@pytest.mark.slow
def test_an_edited_input_quantiser_inside_a_da_kernel_is_blamed_on_that_layer(
        quick_jet_at_seed: Callable[[int], Path], tmp_path: Path) -> None:
    """The logits kernel's per-element input quantisers (fused into it by hls4ml) truncate instead of rounding:
    the layer feeding it stores what it should (its trimming is proven harmless by logits_iq), so the first
    divergent layer is logits, not the trimmed one before it."""
    from fastml.backends.hls4ml.diagnose import _braced_block

    project = _copy(quick_jet_at_seed(SEEDS[0]), tmp_path)
    fw = project / "firmware" / "firmware"
    call = re.search(r"nnet::dense_da_(\d+)<[^>]*>\([^)]*\); // logits", (fw / "jet_tagger.cpp").read_text())
    assert call is not None
    code_gen = fw / "nnet_utils" / "nnet_code_gen.h"
    text = code_gen.read_text()
    kernel = _braced_block(text, rf"\bvoid\s+dense_da_{call.group(1)}\s*\([^)]*\)\s*\{{")
    assert kernel is not None and "AP_RND, AP_WRAP> model_inp_q_" in kernel
    truncating = kernel.replace("AP_RND, AP_WRAP> model_inp_q_", "AP_TRN, AP_WRAP> model_inp_q_")
    code_gen.write_text(text.replace(kernel, truncating))
    diag = diagnose(project, events=REAL_BUILD_EVENTS)
    assert diag.output_mismatches and diag.output_mismatches > 0
    assert diag.first_divergent_layer == "logits" and diag.inconsistent is None
    feeding = next(ly for ly in diag.layers if ly.name == "dense_2_relu")
    assert feeding.status == "trimmed" and feeding.proven_by == ["logits_iq"]
