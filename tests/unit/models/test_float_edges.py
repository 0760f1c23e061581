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
