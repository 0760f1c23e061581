"""``fastml diagnose``: faults injected into a built project the way real ones happen are found at the right
layer with the right class of cause; a correct project shows no divergence at any layer.

The project is a tiny HGQ2 network (6 -> QDense 8 relu -> tanh lookup table -> QDense 3), written by hls4ml
once per session (no compile: diagnose compiles its own instrumented copy); each fault edits a copy of it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from fastml.diagnose import diagnose  # noqa: E402
from fastml.errors import FastmlError  # noqa: E402
from fastml.verify.layers import FixedType, classify, compare_layer, to_grid  # noqa: E402

N_EVENTS = 400


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
    from fastml.verify.layers import keras_layer_values
    from fastml.verify.layers import load_keras as _load_keras

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
    ly = compare_layer("l", "f", ref_out, np.array([[0.5, 1.0, -3.0]]), t)
    assert ly.status == "diverges" and ly.cause == "overflow" and ly.worst and ly.worst["lsb_distance"] == 8 * 32
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
