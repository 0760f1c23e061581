"""Bring your own model: saved HGQ2/Keras models, float models to quantise, QKeras .h5 files, notebook models.

The one-line refusals and the QKeras rebuild against QKeras's own predictions (no compilation). The builds of
the committed recipes (zero mismatches; for QKeras, the verified outputs are QKeras's predictions bit for bit,
golden files made by real QKeras 0.9.0, tests/fixtures/qkeras/make_fixtures.py) are in
tests/integration/test_byo_models.py.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError
from fastml.recipe import load_config

REPO = Path(__file__).resolve().parents[2]
QKERAS = REPO / "tests" / "fixtures" / "qkeras"


def _hgq_model(n_in: int = 16, n_out: int = 5, extra_float_layer: str | None = None):
    import keras
    from hgq.layers import QDense

    inputs = keras.Input((n_in,))
    x = QDense(8, activation="relu", name="hidden")(inputs)
    if extra_float_layer == "tanh":
        x = keras.layers.Activation("tanh", name="squash")(x)
    elif extra_float_layer == "relu":
        x = keras.layers.Activation("relu", name="rectify")(x)
    elif extra_float_layer == "dense":
        x = keras.layers.Dense(8, name="float_dense")(x)
    outputs = QDense(n_out, name="logits")(x)
    return keras.Model(inputs, outputs)


def _recipe(tmp_path: Path, model: dict, data_source: str, backend: str = "hls4ml") -> Path:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "byo", "data": {"source": data_source}, "model": model,
                                    "firmware": {"backend": backend, "output_dir": str(tmp_path / "out")}}))
    return path


def _train(recipe: Path):
    from fastml.data import load_data
    from fastml.pipeline import train

    cfg = load_config(recipe)
    return train(cfg, load_data(cfg.data, cfg.config_dir), progress=False)


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


# ------------------------------------------------------------------------------------------ kind: keras


def test_missing_and_misnamed_model_files_fail_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_recipe(tmp_path, {"kind": "keras", "path": "nope.keras"}, "builtin:jets_hlf"))
    assert "model.path" in _one_line(err) and "does not exist" in str(err.value)
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ConfigError) as err:
        load_config(_recipe(tmp_path, {"kind": "keras", "path": "weights.pt"}, "builtin:jets_hlf"))
    assert ".keras" in _one_line(err)


@pytest.mark.parametrize("content, expected", [
    (b"\x80\x04\x95" + b"\x00" * 40, "pickle"),
    (b"", "empty"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "HDF5"),
    (b"this is not a model at all", "not a .keras archive"),
])
def test_files_that_are_not_keras_models_give_one_line(tmp_path: Path, content: bytes, expected: str,
                                                        toy_npz: Path) -> None:
    (tmp_path / "m.keras").write_bytes(content)
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "m.keras"}, str(toy_npz)))
    msg = _one_line(err)
    assert expected in msg and "m.keras" in msg


@pytest.mark.slow
def test_truncated_keras_archive_names_the_file(tmp_path: Path, toy_npz: Path) -> None:
    good = tmp_path / "good.keras"
    _hgq_model().save(good)
    (tmp_path / "cut.keras").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "cut.keras"}, str(toy_npz)))
    assert "cut.keras" in _one_line(err)


def test_lambda_layers_are_refused_unless_trusted(tmp_path: Path) -> None:
    import keras

    from fastml.models.imported import load_keras_file

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2, name="doubler")(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    assert any(n.endswith("config.json") for n in zipfile.ZipFile(path).namelist())
    with pytest.raises(ConfigError) as err:
        load_keras_file(path)
    msg = _one_line(err)
    assert "'doubler' (Lambda)" in msg and "trust_code: true" in msg
    loaded = load_keras_file(path, trust_code=True)  # the user's explicit opt-in loads it
    assert np.allclose(loaded.predict(np.ones((1, 4), np.float32), verbose=0), 2.0)


def test_input_and_output_shapes_are_checked_against_the_data(tmp_path: Path, toy_npz: Path) -> None:
    _hgq_model(n_in=12).save(tmp_path / "wide.keras")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "wide.keras"}, str(toy_npz)))
    msg = _one_line(err)
    assert "(12,)" in msg and "(16,)" in msg and "wide.keras" in msg
    _hgq_model(n_out=3).save(tmp_path / "three.keras")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "three.keras"}, str(toy_npz)))
    assert "5 classes" in _one_line(err)


def test_float_layers_need_quantize(tmp_path: Path, toy_npz: Path) -> None:
    _hgq_model(extra_float_layer="dense").save(tmp_path / "mixed.keras")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "mixed.keras"}, str(toy_npz)))
    msg = _one_line(err)
    assert "'float_dense' (Dense)" in msg and "quantize: true" in msg


def test_a_layer_one_backend_cannot_build_names_the_other(tmp_path: Path, toy_npz: Path) -> None:
    _hgq_model(extra_float_layer="relu").save(tmp_path / "act.keras")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "act.keras"}, str(toy_npz), backend="rtl"))
    msg = _one_line(err)
    assert "'rectify' (Activation)" in msg and "da4ml" in msg and "'hls4ml'" in msg
    trained = _train(_recipe(tmp_path, {"kind": "keras", "path": "act.keras"}, str(toy_npz), backend="hls4ml"))
    assert trained.selection["train"].startswith("skipped (model loaded from")


def test_float_activation_functions_are_refused(tmp_path: Path, toy_npz: Path) -> None:
    _hgq_model(extra_float_layer="tanh").save(tmp_path / "tanh.keras")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "keras", "path": "tanh.keras"}, str(toy_npz), backend="hls4ml"))
    assert "'squash' (Activation)" in _one_line(err) and "'tanh'" in str(err.value)


@pytest.mark.slow
def test_loaded_model_is_built_as_it_is_and_calibrated_only_on_request(tmp_path: Path, toy_npz: Path) -> None:
    model = _hgq_model()
    model.save(tmp_path / "m.keras")
    x = np.load(toy_npz)["x"][:64].astype(np.float32)
    as_saved = _train(_recipe(tmp_path, {"kind": "keras", "path": "m.keras"}, str(toy_npz)))
    assert as_saved.selection["calibrated"] is False and as_saved.ebops is None
    assert np.array_equal(as_saved.predict_quantized(x), model.predict(x, verbose=0))
    calibrated = _train(_recipe(tmp_path, {"kind": "keras", "path": "m.keras", "calibrate": True}, str(toy_npz)))
    assert calibrated.selection["calibrated"] is True and calibrated.ebops is not None


def test_quantize_checks_the_backend_before_training(tmp_path: Path, toy_npz: Path) -> None:
    import keras

    inputs = keras.Input((16,))
    x = keras.layers.Dense(8, activation="tanh", name="squashing_dense")(inputs)
    keras.Model(inputs, keras.layers.Dense(5)(x)).save(tmp_path / "float.keras")
    recipe = _recipe(tmp_path, {"kind": "keras", "path": "float.keras", "quantize": True}, str(toy_npz), "rtl")
    with pytest.raises(ConfigError) as err:
        _train(recipe)  # tanh in the rebuilt QDense: refused before any epoch runs
    assert "'squashing_dense' (QDense)" in _one_line(err) and "'tanh'" in str(err.value)


def test_quantize_rebuilds_a_float_model_with_hgq_layers_from_its_weights() -> None:
    import keras

    from fastml.models.keras_model import rebuild
    from fastml.models.mlp import MLPSection
    from fastml.models.network import quantizer_scopes

    float_model = keras.models.load_model(REPO / "configs" / "models" / "float_tagger.keras")
    q = rebuild(float_model, quantised=True, scopes=quantizer_scopes(MLPSection()))
    dense = [layer for layer in q.layers if hasattr(layer, "kernel")]
    assert [type(layer).__name__ for layer in dense] == ["QDense"] * 4
    assert all(np.array_equal(np.asarray(layer.kernel), np.asarray(float_model.get_layer(layer.name).kernel))
               for layer in dense)
    logits = rebuild(float_model, quantised=False)
    x = np.random.default_rng(0).normal(size=(32, 16)).astype(np.float32)
    probabilities = float_model.predict(x, verbose=0)
    assert np.allclose(keras.ops.softmax(logits.predict(x, verbose=0)), probabilities, atol=1e-5)  # softmax dropped


# ----------------------------------------------------------------------------------------- kind: qkeras


def _golden(name: str) -> tuple[np.ndarray, str]:
    with np.load(QKERAS / f"{name}_golden.npz") as g:
        return g["y"], str(g["x_sha256"])


@pytest.mark.parametrize("name, source, extra", [
    ("qkeras_mlp", "builtin:jets_hlf", {}),
    ("qkeras_conv", "builtin:jets_constituents", {"n_particles": 8}),
])
def test_qkeras_rebuild_reproduces_qkeras_predictions(name: str, source: str, extra: dict) -> None:
    from fastml.data import load_data
    from fastml.models.qkeras_model import read_h5, rebuild_hgq
    from fastml.recipe import DataConfig

    data = load_data(DataConfig(source=source, **extra), REPO)
    y_qkeras, x_sha = _golden(name)
    x = np.ascontiguousarray(data.x_test[: len(y_qkeras)], dtype=np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == x_sha, "not the events QKeras predicted"
    config, weights = read_h5(QKERAS / f"{name}.h5")
    model, notes = rebuild_hgq(config, weights, name)
    assert any("RND_CONV" in n for n in notes)
    y = model.predict(x, batch_size=8192, verbose=0)
    assert len(y) >= 10_000 and int(np.count_nonzero(y != y_qkeras)) == 0


def test_qkeras_auto_alpha_is_refused_naming_layer_and_quantiser(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"kind": "qkeras", "path": str(QKERAS / "qkeras_auto_alpha.h5")}, "builtin:jets_hlf")
    with pytest.raises(ConfigError) as err:
        _train(recipe)
    msg = _one_line(err)
    assert "layer 'fc1'" in msg and "kernel_quantizer quantized_bits" in msg and "auto_po2" in msg


@pytest.mark.parametrize("change, expected", [
    ({"use_stochastic_rounding": True}, "stochastic rounding"),
    ({"alpha": "auto"}, "alpha='auto'"),
])
def test_qkeras_quantisers_fastml_cannot_reproduce_are_refused(change: dict, expected: str) -> None:
    from fastml.models.qkeras_model import parse_quantizer

    spec = {"class_name": "quantized_bits", "config": {"bits": 6, "integer": 0, "alpha": 1, **change}}
    with pytest.raises(ConfigError) as err:
        parse_quantizer(spec, "m.h5", "fc1", "kernel_quantizer")
    assert expected in _one_line(err) and "'fc1'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_quantizer("quantized_po2(4)", "m.h5", "fc1", "kernel_quantizer")
    assert "quantized_po2" in _one_line(err)
    q = parse_quantizer("quantized_relu(6, 2)", "m.h5", "act", "activation")
    assert (q.k, q.i, q.f) == (0, 2, 4)


def test_qkeras_folded_batchnorm_rebuild_reproduces_qkeras_predictions() -> None:
    """QConv2DBatchnorm (QKeras 0.9.0, trained 4 epochs: moving variances 0.23-4.4) rebuilt with the folded,
    quantised kernel and bias: QKeras's own predictions on 10 000 events, every output equal."""
    from fastml.data import load_data
    from fastml.models.qkeras_model import read_h5, rebuild_hgq
    from fastml.recipe import DataConfig

    data = load_data(DataConfig(source="builtin:jets_constituents", n_particles=8), REPO)
    y_qkeras, x_sha = _golden("qkeras_conv_bn")
    x = np.ascontiguousarray(data.x_test[: len(y_qkeras)], dtype=np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == x_sha, "not the events QKeras predicted"
    config, weights = read_h5(QKERAS / "qkeras_conv_bn.h5")
    variance = weights["conv_bn"].named("moving_variance")
    assert variance is not None and float(np.abs(variance - 1).max()) > 0.5  # the fold is not a no-op
    model, notes = rebuild_hgq(config, weights, "qkeras_conv_bn")
    assert any("conv_bn: QConv2DBatchnorm -> HGQ2 QConv2D (batch norm folded" in n for n in notes)
    y = model.predict(x, batch_size=8192, verbose=0)
    assert len(y) >= 10_000 and int(np.count_nonzero(y != y_qkeras)) == 0


def test_da4ml_estimate_of_a_qkeras_model_says_why_it_cannot_run() -> None:
    """da4ml 0.5 fails a bare ``assert`` on half-to-even rounding; fastml says so in words before tracing."""
    from fastml._internal.da4ml import trace_keras, untraceable_quantiser
    from fastml.errors import FastmlError
    from fastml.models.qkeras_model import read_h5, rebuild_hgq

    model, _ = rebuild_hgq(*read_h5(QKERAS / "qkeras_mlp.h5"), "qkeras_mlp")
    why = untraceable_quantiser(model)
    assert why is not None and "'input_q'" in why and "RND_CONV" in why and "half to even" in why
    with pytest.raises(FastmlError) as err:
        trace_keras(model)
    assert "AssertionError" not in _one_line(err) and "RND_CONV" in str(err.value)
    assert untraceable_quantiser(_hgq_model()) is None  # HGQ2's own defaults trace


def _standalone_bn(**bn_config) -> tuple[dict, dict]:
    """The committed QDense -> QBatchNormalization model's config and weights, the batch norm's config changed."""
    from fastml.models.qkeras_model import read_h5

    config, weights = read_h5(QKERAS / "qkeras_standalone_bn.h5")
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "QBatchNormalization":
            layer["config"].update(bn_config)
    return config, weights


def test_qkeras_standalone_batchnorm_with_po2_quantisers_is_refused(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"kind": "qkeras", "path": str(QKERAS / "qkeras_standalone_bn.h5")},
                     "builtin:jets_hlf")
    with pytest.raises(ConfigError) as err:
        _train(recipe)  # the real QKeras file: QBatchNormalization with its default po2 quantisers
    msg = _one_line(err)
    assert "'bn1' (QBatchNormalization) after 'fc1'" in msg and "power of two" in msg
    assert "QDenseBatchnorm" in msg


def test_qkeras_standalone_batchnorm_non_po2_scale_is_refused_naming_the_channel() -> None:
    from fastml.models.qkeras_model import rebuild_hgq

    no_quantisers = {f"{r}_quantizer": None for r in ("gamma", "beta", "mean", "variance")}
    config, weights = _standalone_bn(**no_quantisers)
    with pytest.raises(ConfigError) as err:
        rebuild_hgq(config, weights, "bn.h5")
    msg = _one_line(err)
    assert "'bn1'" in msg and "not a power of two" in msg and "channel 0" in msg and "epsilon=0.001" in msg


def test_qkeras_standalone_batchnorm_with_po2_scale_is_folded_exactly() -> None:
    """Variance + epsilon powers of four and gamma powers of two: QKeras's float32 x * inv + (beta - mean * inv)
    is exact, so the batch norm folds into fc1; checked against that formula evaluated in float32 as TensorFlow
    does (tf.nn.batch_normalization), on 20 000 events."""
    from fastml.models.qkeras_model import FixedQ, rebuild_hgq

    no_quantisers = {f"{r}_quantizer": None for r in ("gamma", "beta", "mean", "variance")}
    config, weights = _standalone_bn(epsilon=0.0, **no_quantisers)
    names = weights["bn1"].names
    rng = np.random.default_rng(3)
    values = {"gamma": 2.0 ** rng.integers(-1, 2, 8), "beta": rng.integers(-16, 16, 8) / 8.0,
              "moving_mean": rng.integers(-16, 16, 8) / 16.0, "moving_variance": 4.0 ** rng.integers(-1, 2, 8)}
    for i, name in enumerate(names):
        key = name.split("/")[-1].split(":")[0]
        weights["bn1"][i] = np.asarray(values[key], np.float32)
    model, notes = rebuild_hgq(config, weights, "bn.h5")
    assert any("bn1: QBatchNormalization folded exactly into fc1" in n for n in notes)
    assert "bn1" not in [layer.name for layer in model.layers]

    x = rng.normal(0, 2, (20_000, 16)).astype(np.float32)
    q_in, q_w, q_relu = FixedQ(1, 4, 5, "SAT"), FixedQ(1, 0, 5, "SAT"), FixedQ(0, 0, 6, "SAT")
    w1, b1 = (q_w.qkeras_quantize(a) for a in weights["fc1"])
    w2, b2 = (q_w.qkeras_quantize(a) for a in weights["output"])
    h = (q_in.qkeras_quantize(x) @ w1 + b1).astype(np.float32)
    inv = (np.float32(1) / np.sqrt(values["moving_variance"].astype(np.float32)) * values["gamma"]).astype(np.float32)
    h = (h * inv + (values["beta"] - values["moving_mean"] * inv).astype(np.float32)).astype(np.float32)
    y = (q_relu.qkeras_quantize(h) @ w2 + b2).astype(np.float32)
    assert int(np.count_nonzero(model.predict(x, batch_size=8192, verbose=0) != y)) == 0


def test_qkeras_folded_kernel_on_a_rounding_tie_is_refused() -> None:
    """A folded weight exactly on a quantisation step's midpoint: TensorFlow's inexact rsqrt decides which way
    QKeras rounds it, so the import must refuse rather than guess."""
    from fastml.models.qkeras_model import read_h5, rebuild_hgq

    config, weights = read_h5(QKERAS / "qkeras_conv_bn.h5")
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "QConv2DBatchnorm":
            layer["config"]["epsilon"] = 0.0
    w = weights["conv_bn"]
    for i, name in enumerate(w.names):
        if name.endswith(("gamma:0", "moving_variance:0")):
            w[i] = np.ones_like(w[i])
        if name.endswith("/kernel:0"):
            w[i] = w[i].copy()
            w[i][0, 0, 0, 0] = 3 / 64  # kernel quantiser quantized_bits(8, 2): steps of 1/32, 3/64 a midpoint
    with pytest.raises(ConfigError) as err:
        rebuild_hgq(config, weights, "tie.h5")
    msg = _one_line(err)
    assert "'conv_bn' (QConv2DBatchnorm)" in msg and "kernel[0, 0, 0, 0]" in msg and "rsqrt" in msg


def test_qkeras_truncated_file_and_rtl_backend_give_one_line(tmp_path: Path) -> None:
    cut = tmp_path / "cut.h5"
    data = (QKERAS / "qkeras_mlp.h5").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "qkeras", "path": "cut.h5"}, "builtin:jets_hlf"))
    assert "cut.h5" in _one_line(err)
    # rtl with its default compiler (da4ml 0.5): the backend's layer check refuses before anything compiles, and
    # names the compiler that can (alkaid: tests/integration/test_byo_models.py builds it)
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "qkeras", "path": str(QKERAS / "qkeras_mlp.h5")}, "builtin:jets_hlf",
                       backend="rtl"))
    msg = _one_line(err)
    assert "RND_CONV" in msg and "half to even" in msg and "firmware.compiler 'da4ml'" in msg
    assert "firmware.compiler: alkaid" in msg


def test_build_model_refuses_what_is_not_a_keras_model(tmp_path: Path) -> None:
    import fastml

    with pytest.raises(ConfigError) as err:
        fastml.build_model(object(), "builtin:jets_hlf", output_dir=tmp_path)
    assert "keras.Model" in _one_line(err)


# ------------------------------------------------------------------------------------------ kind: qonnx

QONNX = REPO / "tests" / "fixtures" / "qonnx"


def test_qonnx_reference_is_qonnx_execution_and_equals_qkeras() -> None:
    from fastml.data import load_data
    from fastml.models.qonnx_model import execute, load_qonnx
    from fastml.recipe import DataConfig

    with np.load(QONNX / "qonnx_mlp_golden.npz") as g:
        y_qonnx, x_sha = g["y"], str(g["x_sha256"])
    data = load_data(DataConfig(source="builtin:jets_hlf"), REPO)
    x = np.ascontiguousarray(data.x_test[: len(y_qonnx)], dtype=np.float32)
    assert hashlib.sha256(x.tobytes()).hexdigest() == x_sha
    y = execute(load_qonnx(QONNX / "qonnx_mlp.onnx"), x)  # the cleaned graph, as the build runs it
    assert len(y) >= 10_000 and int(np.count_nonzero(y != y_qonnx)) == 0
    y_qkeras, _ = _golden("qkeras_mlp")  # the same network in QKeras: same arithmetic, same numbers
    assert int(np.count_nonzero(y_qonnx != y_qkeras)) == 0


def test_qonnx_bad_files_and_non_fixed_point_scales_give_one_line(tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    (tmp_path / "junk.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "qonnx", "path": "junk.onnx"}, "builtin:jets_hlf"))
    assert "junk.onnx" in _one_line(err)
    proto = onnx.load(str(QONNX / "qonnx_mlp.onnx"))
    weight_quant = [n for n in proto.graph.node if n.op_type == "Quant"][1]  # Brevitas: input, then first weight
    for init in proto.graph.initializer:
        if init.name == weight_quant.input[1]:  # its scale (Brevitas shares one tensor among equal scales)
            init.CopyFrom(numpy_helper.from_array(np.asarray(0.03, np.float32), init.name))
    onnx.save(proto, tmp_path / "scaled.onnx")
    with pytest.raises(ConfigError) as err:
        _train(_recipe(tmp_path, {"kind": "qonnx", "path": "scaled.onnx"}, "builtin:jets_hlf"))
    msg = _one_line(err)
    assert "(Quant)" in msg and "power-of-two" in msg
    with pytest.raises(ConfigError) as err:  # rtl with its default compiler: da4ml takes no ONNX, alkaid does
        _train(_recipe(tmp_path, {"kind": "qonnx", "path": str(QONNX / "qonnx_mlp.onnx")}, "builtin:jets_hlf",
                       backend="rtl"))
    assert "firmware.compiler 'da4ml' cannot build a QONNX graph" in _one_line(err)
    assert "firmware.compiler: alkaid traces it" in str(err.value)
