"""Users' files with any per-event shape: images with channels first or last, sequences, read as they are,
split by event, scaled with the statistics ``Scaler`` documents for the event's rank."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fastml.data import Scaler, load_data, read_source, split_table
from fastml.errors import DataError
from fastml.recipe import parse_config

PEER_MODELS = Path(__file__).resolve().parents[3] / ".." / "shared" / "peer-models"
TFC = PEER_MODELS / "brevitas_tfc_2w2a"


def _events(shape: tuple[int, ...], n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 3.0, size=(n, *shape)).astype(np.float32)
    return x, rng.integers(0, 3, n)


@pytest.mark.parametrize("shape", [(1, 6, 5), (6, 5, 3), (2, 3, 4, 5), (7, 4)])
def test_npz_of_any_event_shape_is_read_as_it_is(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x, y = _events(shape)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    t = read_source("d.npz", tmp_path)
    assert t.input_shape == shape
    np.testing.assert_array_equal(t.x, x)
    np.testing.assert_array_equal(t.y, y)
    assert len(t.feature_names) == shape[-1]  # the names name the last axis


def test_h5_image_with_channels_last_is_read(tmp_path: Path) -> None:
    x, y = _events((4, 4, 2))
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
    t = read_source("d.h5", tmp_path)
    assert t.x.shape == (300, 4, 4, 2)
    np.testing.assert_array_equal(t.x, x)


@pytest.mark.parametrize(("x", "expected"), [
    (np.zeros(50, np.float32), "expected (events, features) or (events, ...)"),
    (np.zeros((50, 1, 0, 28), np.float32), "an event of no values"),
])
def test_arrays_without_a_value_per_event_are_one_line(tmp_path: Path, x: np.ndarray, expected: str) -> None:
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(50) % 2)
    with pytest.raises(DataError) as err:
        read_source("d.npz", tmp_path)
    msg = str(err.value)
    assert expected in msg and str(x.shape) in msg and "\n" not in msg


def test_feature_names_must_name_the_last_axis(tmp_path: Path) -> None:
    x, y = _events((1, 4, 4))
    np.savez(tmp_path / "d.npz", x=x, y=y, feature_names=np.array(["a", "b", "c"]))
    with pytest.raises(DataError, match=r"feature_names has 3 names.*\(300, 1, 4, 4\).*\(4\)"):
        read_source("d.npz", tmp_path)


def test_n_particles_still_needs_particle_arrays(tmp_path: Path) -> None:
    x, y = _events((1, 4, 4))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(DataError, match=r"data\.n_particles needs 'x' of shape"):
        read_source("d.npz", tmp_path, n_particles=2)


def test_split_of_images_takes_whole_events_as_the_flat_split_does() -> None:
    """The split permutes events: an image file and its flattened twin give the same events in each split."""
    x, y = _events((2, 3, 3), n=500)
    x[:, 0, 0, 0] = np.arange(500)  # event id
    from fastml.data import Table

    image = split_table(Table(x, y, ("c0", "c1", "c2"), ("a", "b", "c")), 0.6, 0.2, seed=3, scaling="none")
    flat = split_table(Table(x.reshape(500, -1), y, tuple(f"v{i}" for i in range(18)), ("a", "b", "c")),
                       0.6, 0.2, seed=3, scaling="none")
    for a, b in ((image.x_train, flat.x_train), (image.x_val, flat.x_val), (image.x_test, flat.x_test)):
        assert a.shape[1:] == (2, 3, 3)
        np.testing.assert_array_equal(a.reshape(len(a), -1), b)
    ids = np.concatenate([s[:, 0, 0, 0] for s in (image.x_train, image.x_val, image.x_test)])
    assert sorted(ids.astype(int).tolist()) == list(range(500))  # disjoint and complete


def test_standard_scaling_of_images_is_one_statistic_whatever_the_channel_axis() -> None:
    """Events of rank >= 3: one offset/scale from every training value, so channels first and channels last
    scale identically (the channel axis is not guessed), and the map is the same at every pixel."""
    x, _ = _events((3, 4, 5), n=400)
    x[:, 1] += 10.0  # a channel with another range: still one statistic
    first = Scaler.fit(x, "standard")
    last = Scaler.fit(np.moveaxis(x, 1, -1), "standard")
    assert first.offset.shape == first.scale.shape == (1,)
    np.testing.assert_allclose(first.offset, x.mean(dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(first.scale, x.std(dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(first.to_dict()["offset"], last.to_dict()["offset"], rtol=1e-6)
    np.testing.assert_allclose(np.moveaxis(first(x), 1, -1), last(np.moveaxis(x, 1, -1)), rtol=1e-5, atol=1e-6)
    scaled = first(x)
    assert abs(float(scaled.mean())) < 1e-4 and abs(float(scaled.std()) - 1.0) < 1e-4
    # zeros are ordinary pixel values here, not padding: an all-zero row is scaled like any other
    x[:, :, 0, :] = 0.0
    assert np.all(Scaler.fit(x, "standard")(x)[:, :, 0, :] != 0.0)
    again = Scaler.from_dict(first.to_dict())
    np.testing.assert_array_equal(again(x), first(x))


def test_scaling_none_passes_nd_values_through() -> None:
    x, y = _events((1, 6, 6))
    from fastml.data import Table

    d = split_table(Table(x, y, tuple("abcdef"), ("a", "b", "c")), 0.5, 0.25, seed=0, scaling="none")
    np.testing.assert_array_equal(np.sort(np.concatenate([d.x_train, d.x_val, d.x_test]).ravel()),
                                  np.sort(x.ravel()))
    assert d.summary()["input_shape"] == [1, 6, 6]


def test_sequences_keep_per_feature_scaling_and_padding() -> None:
    """Rank-2 events (time steps, features) scale as particles do: per feature, padded steps stay 0."""
    x, _ = _events((6, 3))
    x[:, 4:] = 0.0  # padded steps
    s = Scaler.fit(x, "standard")
    assert s.offset.shape == (3,)
    np.testing.assert_allclose(s.offset, x[:, :4].reshape(-1, 3).mean(axis=0), rtol=1e-5)
    out = s(x)
    assert np.all(out[:, 4:] == 0.0) and abs(float(out[:, :4].mean())) < 1e-4


def test_recipe_reads_the_image_file_of_the_corpus_as_the_flat_one() -> None:
    """brevitas_tfc_2w2a: the (events, 1, 28, 28) file and its flat (events, 784) twin give the same split events."""
    if not TFC.is_dir():
        pytest.skip("../shared/peer-models not present")
    loaded = {}
    for name in ("inputs_mnist_1x28x28.npz", "inputs_mnist_flat784.npz"):
        cfg = parse_config({"name": "t", "model": {"kind": "mlp"}, "firmware": {"backend": "rtl"},
                            "data": {"source": name, "scaling": "none",
                                     "split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 42}}},
                           TFC / "recipe.yaml")
        loaded[name] = load_data(cfg.data, cfg.config_dir)
    image, flat = loaded["inputs_mnist_1x28x28.npz"], loaded["inputs_mnist_flat784.npz"]
    assert image.input_shape == (1, 28, 28) and flat.input_shape == (784,)
    np.testing.assert_array_equal(image.x_test.reshape(len(image.x_test), -1), flat.x_test)
    np.testing.assert_array_equal(image.y_train, flat.y_train)
    with np.load(TFC / "inputs_mnist_flat784.npz") as f:
        assert len(image.y_train) + len(image.y_val) + len(image.y_test) == len(f["y"])
