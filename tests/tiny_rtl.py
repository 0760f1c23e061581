"""The tiny RTL model shared by the RTL backend, compiled-emulator and estimate tests: a 16 -> 8 -> 5 HGQ2 MLP and
the recipe that builds it with the rtl backend. Trained once per session by the ``tiny_rtl_trained`` fixture
(tests/conftest.py); a plain module (not collected) so the tests can import the recipe helper."""

from __future__ import annotations

import numpy as np

from fastml.recipe import parse_config

N_EVENTS = 3000
CLOCK_NS = 5.0


def tiny_trained_model(seed: int = 0):
    """A 16 -> 8 -> 5 HGQ2 MLP trained 2 epochs on a synthetic linear task, ranges calibrated."""
    import keras
    from hgq.utils import trace_minmax

    from fastml.models import TrainedModel
    from fastml.models.mlp import build_mlp
    from fastml.recipe import MLPConfig

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4000, 16)).astype(np.float32)
    y = (x @ rng.normal(size=(16, 5))).argmax(axis=1)
    keras.utils.set_random_seed(seed)
    model = build_mlp(MLPConfig(hidden=[8], beta0=1e-4), 16, 5, name="tiny")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=256, verbose=0)
    trace_minmax(model, x, batch_size=8192)

    def predict(v: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(v, np.float32), batch_size=8192, verbose=0))

    trained = TrainedModel(kind="mlp", model=model, predict_quantized=predict, predict_float=None, n_classes=5)
    x_test = rng.normal(size=(N_EVENTS, 16)).astype(np.float32) * 1.5  # wider than training: exercises overflow
    return trained, x_test


def rtl_config(**firmware):
    fw = {"backend": "rtl", "clock_period_ns": CLOCK_NS, **firmware}
    rtl_sim = fw.pop("rtl_sim", True)
    return parse_config({"name": "tiny_rtl", "model": {"kind": "mlp", "mlp": {"hidden": [8]}}, "firmware": fw,
                         "verify": {"samples": N_EVENTS, "rtl_sim": rtl_sim, "compiled_emulator": True}},
                        "tiny_rtl.yaml")
