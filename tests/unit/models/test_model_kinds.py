"""Model kinds (fastml/models/): the registry, per-kind recipe sections, and that every network kind's
quantised model is reproduced bit for bit by da4ml (the RTL backend's emulator).

The shipped recipes of the particle-level taggers and the LUT network are built end to end (``--quick``)
in ``test_quick_builds_of_new_kinds`` (tests/integration/test_kinds.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError
from fastml.models import kind_of, registered_kinds
from fastml.recipe import parse_config

REPO = Path(__file__).resolve().parents[3]


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_every_kind_has_its_own_module_and_section() -> None:
    kinds = registered_kinds()
    assert {"mlp", "bdt", "deepsets", "attention", "lut_mlp"} <= set(kinds)
    for name, kind in kinds.items():
        # a reader finds a kind from the file names alone: fastml/models/<kind>.py, or <kind>_model.py where
        # <kind>.py would read like the library it imports (keras, qkeras, qonnx)
        assert kind.__module__ in (f"fastml.models.{name}", f"fastml.models.{name}_model"), name
        assert kind.Section.model_fields["kind"].default == name
        assert kind.backends, name


def test_flat_and_nested_sections_are_the_same_recipe() -> None:
    flat = parse_config({"name": "t", "model": {"kind": "mlp", "hidden": [8, 4]}})
    nested = parse_config({"name": "t", "model": {"kind": "mlp", "mlp": {"hidden": [8, 4]}}})
    assert flat.model == nested.model and flat.config_hash() == nested.config_hash()
    assert kind_of(flat).name == "mlp"


def test_particle_model_on_feature_data_fails_validation() -> None:
    msg = config_error({"name": "t", "model": {"kind": "deepsets"}})  # default data: builtin:jets_hlf
    assert "model.kind" in msg and "particles" in msg and "(16,)" in msg


def test_feature_model_on_particle_data_fails_validation() -> None:
    msg = config_error({"name": "t", "model": {"kind": "mlp"},
                        "data": {"source": "builtin:jets_constituents", "n_particles": 16}})
    assert "model.kind" in msg and "(16, 8)" in msg


def test_backend_that_cannot_build_a_kind_names_the_layer() -> None:
    msg = config_error({"name": "t", "model": {"kind": "lut_mlp"}})  # default backend: hls4ml
    assert "firmware.backend" in msg and "QDenseT" in msg and "rtl" in msg


def test_bad_kind_and_bad_key_are_one_line() -> None:
    assert "expected one of" in config_error({"name": "t", "model": {"kind": "transformer"}})
    msg = config_error({"name": "t", "model": {"kind": "deepsets", "phy": [4]},
                        "data": {"source": "builtin:jets_constituents"}})
    assert "model.phy" in msg and "phi" in msg
    assert "model.heads" in config_error({"name": "t", "model": {"kind": "attention", "heads": 0},
                                          "data": {"source": "builtin:jets_constituents"}})


def test_data_shape_checked_before_training(toy_npz: Path) -> None:
    """A user file's shape is unknown at load time: ``fastml.models.train`` refuses before any training."""
    from fastml.data import load_data
    from fastml.models import train

    cfg = parse_config({"name": "t", "data": {"source": toy_npz.name}, "model": {"kind": "deepsets"},
                        "firmware": {"backend": "rtl"}}, toy_npz.parent / "c.yaml")
    data = load_data(cfg.data, cfg.config_dir)
    with pytest.raises(ConfigError, match="takes a list of particles"):
        train(cfg, data, epochs=1, progress=False)


@pytest.mark.parametrize(("kind", "section", "shape"), [
    ("deepsets", {"phi": [6, 4], "rho": [4], "pooling": "mean"}, (8, 3)),
    ("deepsets", {"phi": [4], "rho": [], "pooling": "max", "batchnorm": False}, (8, 3)),
    ("attention", {"embed": 4, "heads": 2, "key_dim": 2, "head": [4]}, (4, 3)),
    ("lut_mlp", {"hidden": [4], "d_hl": 4}, (6,)),
])
@pytest.mark.slow
def test_network_kind_is_bit_exact_through_da4ml(kind: str, section: dict, shape: tuple[int, ...]) -> None:
    """Built with random weights, calibrated, traced by da4ml: the emulator equals Keras exactly; the float
    twin has the same input and output shapes."""
    import keras
    from hgq.utils import trace_minmax

    from fastml._internal.da4ml import trace_keras

    cfg = parse_config({"name": "t", "model": {"kind": kind, **section}, "firmware": {"backend": "rtl"},
                        "data": {"source": "builtin:jets_constituents" if len(shape) == 2 else "builtin:jets_hlf"}})
    net = kind_of(cfg)
    keras.utils.set_random_seed(1)
    model = net.build(shape, 3)
    twin = net.build_float(shape, 3)
    assert model.input_shape[1:] == twin.input_shape[1:] == shape
    assert model.output_shape == twin.output_shape == (None, 3)
    x = np.random.default_rng(2).normal(size=(300, *shape)).astype(np.float32)
    trace_minmax(model, x)
    ref = model.predict(x, verbose=0)
    emulated = trace_keras(model).predict(x.reshape(len(x), -1)).reshape(ref.shape)
    assert np.array_equal(ref, emulated)
    assert np.unique(ref).size > 10, "a constant model would make this comparison meaningless"
