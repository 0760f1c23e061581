"""The rtl backend with ``firmware.compiler: alkaid``: the tiny HGQ2 MLP, and the same MLP with saturating
(``SAT``) quantisers from its input on, to Verilog through alkaid, bit-exact in alkaid's emulator and in verilator;
da4ml 0.5 refuses the saturating input in one line. Skipped, with the reason, where alkaid is not installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from tiny_rtl import N_EVENTS, rtl_config, tiny_trained_model  # noqa: E402

from fastml.errors import ConfigError  # noqa: E402
from fastml.verification import verify_project  # noqa: E402

pytestmark = pytest.mark.skipif(importlib.util.find_spec("alkaid") is None,
                                reason="not run: alkaid is not installed (pip install alkaid)")


def _saturating_model():
    """The tiny 16 -> 8 -> 5 MLP with every data quantiser (the input's first) saturating, and events 4x wider
    than its training data, so many inputs lie outside the input quantiser's range and must saturate."""
    import keras
    from hgq.utils import trace_minmax

    from fastml.models import TrainedModel
    from fastml.models.mlp import build_mlp
    from fastml.recipe import MLPConfig

    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 16)).astype(np.float32)
    y = (x @ rng.normal(size=(16, 5))).argmax(axis=1)
    keras.utils.set_random_seed(1)
    model = build_mlp(MLPConfig(hidden=[8], beta0=1e-4, datalane_overflow="SAT"), 16, 5, name="tiny_sat")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=256, verbose=0)
    trace_minmax(model, x, batch_size=8192)

    def predict(v: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(np.asarray(v, np.float32), batch_size=8192, verbose=0))

    trained = TrainedModel(kind="mlp", model=model, predict_quantized=predict, predict_float=None, n_classes=5)
    return trained, rng.normal(size=(N_EVENTS, 16)).astype(np.float32) * 4


def _build_and_verify(trained, x, tmp_path):
    from fastml.backends import convert

    project = convert(trained, rtl_config(compiler="alkaid"), tmp_path)
    levels, reference = verify_project(project, x)
    return project, levels, reference


@pytest.mark.slow
def test_alkaid_verilog_bit_exact_in_emulator_and_verilator(tmp_path):
    trained, x = tiny_trained_model()
    project, levels, reference = _build_and_verify(trained, x, tmp_path)
    assert len(np.unique(reference)) > 50  # the check can fail: the reference varies
    for level in ("emulator", "rtl_sim"):
        assert levels[level].samples == N_EVENTS and levels[level].outputs == 5
        assert levels[level].mismatches == 0, levels[level].first_mismatch
    assert project.info["compiler"].startswith("alkaid ") and project.info["rtl_sim"].startswith("verilator ")
    assert project.not_run["compiled_emulator"].startswith("fastml's compiled emulator reads da4ml")
    res, lat = project.resources["da4ml_estimate"], project.latency
    assert res.compiler == lat.compiler == project.info["compiler"]  # every figure names its compiler
    assert res.lut > 0 and res.ff > 0 and lat.cycles >= 1 and lat.ns == lat.cycles * 5.0
    assert (project.path / "src" / "fastml_model.v").is_file()


@pytest.mark.slow
def test_saturating_input_traced_by_alkaid_refused_by_da4ml(tmp_path):
    from fastml.backends import layer_check
    from fastml.backends.rtl import check_compiler_layers

    trained, x = _saturating_model()
    with pytest.raises(ConfigError) as err:
        layer_check(rtl_config())(trained.model, "tiny_sat")
    msg = str(err.value)
    assert "\n" not in msg and "SAT overflow" in msg and "firmware.compiler: alkaid" in msg
    check_compiler_layers(trained.model, "tiny_sat", "alkaid")  # no error: alkaid traces it

    first = next(layer for layer in trained.model.layers if getattr(layer, "enable_iq", False))
    assert first.iq.quantizer.overflow_mode == "SAT"
    int_bits = np.asarray(first.iq.quantizer.kif[1]).reshape(-1)
    out_of_range = np.abs(x) >= 2.0 ** int_bits
    assert out_of_range.mean() > 0.05  # the events exercise saturation, not only the in-range path
    project, levels, _ = _build_and_verify(trained, x, tmp_path)
    assert "saturates or rounds half to even in the firmware" in project.info["input_port"]
    for level in ("emulator", "rtl_sim"):
        assert levels[level].mismatches == 0, levels[level].first_mismatch
