"""The float edges of imported models made explicit (issue 26 item 3), and BatchNormalization through
``quantize: true`` (item 2): fixed-point types from the data or the recipe, recorded; no refusal, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
PEERS = REPO / ".." / "shared" / "peer-models"


def _peer(relative: str) -> Path:
    path = PEERS / relative
    if not path.is_file():
        pytest.skip("../shared/peer-models not present")
    return path


# ------------------------------------------------------------------------------ BatchNormalization, quantize: true


def test_quantize_carries_batchnorm_gamma_beta_and_moving_statistics() -> None:
    """HGQ2 0.2's QBatchNormalization keeps gamma/beta as bn_gamma/bn_beta (``.beta`` is computed, ``.gamma``
    raises): every one of the four must be the float layer's, not HGQ2's initial ones/zeros."""
    import keras

    from fastml.models.keras_model import rebuild
    from fastml.models.mlp import MLPSection
    from fastml.models.network import quantizer_scopes

    inputs = keras.Input((6,))
    x = keras.layers.Dense(4, name="fc")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    outputs = keras.layers.Activation("softmax")(x)
    float_model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(7)
    bn = float_model.get_layer("bn")
    values = {"gamma": rng.uniform(0.5, 2.0, 4), "beta": rng.normal(size=4), "moving_mean": rng.normal(size=4),
              "moving_variance": rng.uniform(0.5, 3.0, 4)}
    for attr, value in values.items():
        getattr(bn, attr).assign(value.astype(np.float32))

    q = rebuild(float_model, quantised=True, scopes=quantizer_scopes(MLPSection()))
    qbn = q.get_layer("bn")
    assert type(qbn).__name__ == "QBatchNormalization"
    carried = {"gamma": qbn.bn_gamma, "beta": qbn.bn_beta, "moving_mean": qbn.moving_mean,
               "moving_variance": qbn.moving_variance}
    for attr, value in values.items():
        assert np.allclose(np.asarray(carried[attr]), value, atol=1e-6), attr
    # and the float rebuild computes the float model's logits (softmax dropped)
    logits = rebuild(float_model, quantised=False)
    xs = rng.normal(size=(64, 6)).astype(np.float32)
    assert np.allclose(keras.ops.softmax(logits.predict(xs, verbose=0)), float_model.predict(xs, verbose=0),
                       atol=1e-5)


def test_peer_batchnorm_model_rebuilds_with_its_own_batchnorm_weights() -> None:
    """The hls4ml example-models KERAS_3layer_batch_norm (four BatchNormalization layers) through quantize: true."""
    from fastml.models.imported import load_keras_file
    from fastml.models.keras_model import rebuild
    from fastml.models.mlp import MLPSection
    from fastml.models.network import quantizer_scopes

    float_model = load_keras_file(_peer("float_keras_3layer_bn/KERAS_3layer_batch_norm.keras"))
    q = rebuild(float_model, quantised=True, scopes=quantizer_scopes(MLPSection()))
    bns = [layer for layer in float_model.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 4
    for layer in bns:
        qbn = q.get_layer(layer.name)
        assert np.array_equal(np.asarray(qbn.bn_gamma), np.asarray(layer.gamma))
        assert np.array_equal(np.asarray(qbn.bn_beta), np.asarray(layer.beta))
        assert not np.allclose(np.asarray(layer.gamma), 1.0)  # the copy is not HGQ2's initial value by chance


# ------------------------------------------------------------------------------ QKeras: the float edges


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _qkeras_3layer() -> tuple[dict, dict]:
    from fastml.models.qkeras_model import read_h5

    return read_h5(_peer("qkeras_3layer/QKERAS_3layer.h5"))


def _input_quantizer(model):
    from hgq.layers import Quantizer

    first = next(op for op in model.layers if isinstance(op, Quantizer))
    return tuple(int(np.max(np.asarray(v))) for v in first.quantizer.kif)


def _training_like(peak: float, n: int = 4000, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, 16)).astype(np.float32)
    return (x / np.abs(x).max() * peak).astype(np.float32)


def test_float_input_gets_a_quantiser_from_the_training_range_and_the_reference_is_exactly_that() -> None:
    """QKERAS_3layer.h5 has no quantiser on its input: ``auto`` takes the integer bits from the training split's
    largest magnitude; the reference is the published model on inputs rounded half to even to that type."""
    from fastml.models.float_edges import FixedType
    from fastml.models.qkeras_model import EdgePolicy, rebuild_hgq

    config, weights = _qkeras_3layer()
    x_train = _training_like(peak=5.3)
    policy = EdgePolicy(x_train=x_train)
    model, _ = rebuild_hgq(config, weights, "q.h5", edges=policy)
    k, i, f = _input_quantizer(model)
    assert k == 1 and 2.0 ** (i - 1) <= 5.3 < 2.0 ** i and k + i + f <= 16  # 3 integer bits hold 5.3
    inputs = [e.as_dict() for e in policy.edges if e.edge == "input"]
    assert len(inputs) == 1 and inputs[0]["where"] == "input_1" and str(FixedType(k, i, f)) in inputs[0]["choice"]

    published, _ = rebuild_hgq(config, weights, "q.h5", edges=EdgePolicy(as_published=True))
    x = _training_like(peak=7.0, n=3000, seed=1)  # beyond the training range too: saturates
    x_q = np.clip(np.round(x.astype(np.float64) * 2.0 ** f), -(2.0 ** (i + f)), 2.0 ** (i + f) - 1) / 2.0 ** f
    y = model.predict(x, verbose=0)
    assert np.array_equal(y, published.predict(x_q.astype(np.float32), verbose=0))
    assert not np.array_equal(y, published.predict(x, verbose=0))  # the quantiser does change the outputs


def test_explicit_input_precision_is_honoured_and_one_too_wide_for_float32_is_one_line() -> None:
    from fastml.models.qkeras_model import EdgePolicy, rebuild_hgq

    config, weights = _qkeras_3layer()
    policy = EdgePolicy(input_precision="ap_fixed<10,4>", x_train=_training_like(peak=30.0))
    model, _ = rebuild_hgq(config, weights, "q.h5", edges=policy)
    assert _input_quantizer(model) == (1, 3, 6)  # the recipe's type, whatever the data's range
    assert "recipe model.input_precision" in policy.edges[0].choice
    with pytest.raises(ConfigError) as err:
        rebuild_hgq(config, weights, "q.h5", edges=EdgePolicy(input_precision="ap_fixed<32,8>"))
    msg = _one_line(err)
    assert "model.input_precision" in msg and "'fc1'" in msg and "float32" in msg


def test_final_softmax_is_dropped_and_recorded_and_keep_softmax_is_one_line() -> None:
    from fastml.models.qkeras_model import EdgePolicy, rebuild_hgq

    config, weights = _qkeras_3layer()
    policy = EdgePolicy(x_train=_training_like(peak=5.0))
    model, _ = rebuild_hgq(config, weights, "q.h5", edges=policy)
    dropped = [e.as_dict() for e in policy.edges if e.edge == "output activation"]
    assert dropped == [{"where": "softmax", "edge": "output activation", "choice": dropped[0]["choice"]}]
    assert "softmax dropped" in dropped[0]["choice"]
    assert model.layers[-1].name == "output"  # the logits
    y = model.predict(_training_like(peak=5.0, n=200), verbose=0)
    assert not np.allclose(y.sum(axis=1), 1.0)  # logits, not probabilities
    with pytest.raises(ConfigError) as err:
        rebuild_hgq(config, weights, "q.h5", edges=EdgePolicy(keep_softmax=True, x_train=_training_like(5.0)))
    assert "keep_softmax" in _one_line(err) and "'softmax'" in str(err.value)


def test_without_a_policy_the_float_input_is_still_refused_by_name() -> None:
    from fastml.models.qkeras_model import rebuild_hgq

    config, weights = _qkeras_3layer()
    with pytest.raises(ConfigError) as err:
        rebuild_hgq(config, weights, "q.h5")
    assert "'fc1'" in _one_line(err) and "float input" in str(err.value)


def test_l1_jet_id_activation_string_reads_as_quantized_relu_8_0_and_other_nestings_are_refused() -> None:
    from fastml.models.qkeras_model import parse_quantizer

    q = parse_quantizer("quantized_relu(quantized_bits(8, 0, alpha=1), 0)", "m.h5", "q_activation", "activation")
    assert (q.k, q.i, q.f) == (0, 0, 8) == (
        lambda r: (r.k, r.i, r.f))(parse_quantizer("quantized_relu(8, 0)", "m.h5", "a", "activation"))
    with pytest.raises(ConfigError) as err:  # inner and outer integer bits disagree: no single reading
        parse_quantizer("quantized_relu(quantized_bits(8, 2, alpha=1), 0)", "m.h5", "q_activation", "activation")
    assert "'q_activation'" in _one_line(err)


def test_deep_sets_float_dense_gets_fixed_point_weights_and_pooling_is_a_shift() -> None:
    """The l1-jet-id Deep Set: float Dense(5) before its softmax gets auto fixed-point weights (recorded, the
    kernel on its grid), GlobalAveragePooling1D over 8 particles is built, the input gets a quantiser."""
    from fastml.models.qkeras_model import EdgePolicy, read_h5, rebuild_hgq

    config, weights = read_h5(_peer("qkeras_deepsets_l1jetid/deepsets_8bit_8const_keras_model.h5"))
    x_train = np.random.default_rng(2).normal(size=(3000, 8, 3)).astype(np.float32)
    policy = EdgePolicy(x_train=x_train)
    model, notes = rebuild_hgq(config, weights, "ds.h5", edges=policy)
    kinds = {e.edge: e.where for e in policy.edges}
    assert kinds == {"input": "input_layer", "float layer": "dense", "output activation": "softmax"}
    dense = model.get_layer("dense")
    assert type(dense).__name__ == "QDense"
    k, i, f = (int(np.max(np.asarray(v))) for v in dense.kq.quantizer.kif)
    kernel = np.asarray(dense.kernel, np.float64)
    assert np.array_equal(kernel * 2.0 ** f, np.round(kernel * 2.0 ** f))  # on the recorded grid
    assert np.abs(kernel - weights["dense"][0]).max() <= 2.0 ** -(f + 1)  # rounded to nearest, not truncated
    float_layer = next(e for e in policy.edges if e.edge == "float layer")
    assert f"ap_fixed<{k + i + f},{k + i}>" in float_layer.choice
    assert type(model.get_layer("global_average_pooling1d")).__name__ == "QGlobalAveragePooling1D"
    assert any("read as quantized_relu(8, 0)" in n for n in notes)
    # the published model (float input, float Dense) and the quantised one agree on most decisions
    published, _ = rebuild_hgq(config, weights, "ds.h5", edges=EdgePolicy(as_published=True))
    x = x_train[:1000]
    agree = float(np.mean(model.predict(x, verbose=0).argmax(1) == published.predict(x, verbose=0).argmax(1)))
    assert agree > 0.9


def test_qkeras_kind_records_float_edges_and_the_published_model_as_float(tmp_path: Path) -> None:
    """Through the kind (as a build runs it): ``selection["float_edges"]`` lists every choice, ``predict_float`` is
    the model as published, ``predict_quantized`` the one with the added quantisers."""
    import yaml

    from fastml.data import load_data
    from fastml.pipeline import train
    from fastml.recipe import load_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "edges", "data": {"source": "builtin:jets_hlf"},
        "model": {"kind": "qkeras", "path": str(_peer("qkeras_3layer/QKERAS_3layer.h5")),
                  "input_precision": "ap_fixed<12,5>"},
        "firmware": {"backend": "hls4ml", "output_dir": str(tmp_path / "out")}}))
    cfg = load_config(recipe)
    data = load_data(cfg.data, cfg.config_dir)
    trained = train(cfg, data, progress=False)
    edges = trained.selection["float_edges"]
    assert [e["edge"] for e in edges] == ["input", "output activation"]
    assert edges[0]["choice"].startswith("input quantiser ap_fixed<12,5>")
    assert trained.predict_float is not None
    x = data.x_test[:2000]
    y_q, y_f = trained.predict_quantized(x), trained.predict_float(x)
    assert y_q.shape == y_f.shape == (2000, 5) and not np.array_equal(y_q, y_f)
