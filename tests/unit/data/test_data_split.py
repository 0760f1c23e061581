"""Data stage: reproducible disjoint splits, recorded scaling, user .npz/.h5 data."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from fastml.data import Scaler, Table, load_data, read_source, split_table
from fastml.errors import DataError
from fastml.recipe import parse_config


def table(n: int = 1000, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32)
    x[:, 0] = np.arange(n)  # event id, to check disjointness
    return Table(x, rng.integers(0, 3, n), ("id", "a", "b", "c"), ("p", "q", "r"))


def test_split_is_reproducible_and_disjoint() -> None:
    t = table()
    a = split_table(t, 0.6, 0.2, seed=7)
    b = split_table(t, 0.6, 0.2, seed=7)
    c = split_table(t, 0.6, 0.2, seed=8)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    ids = [np.round(a.scaler.offset[0] + s[:, 0] * a.scaler.scale[0]).astype(int)
           for s in (a.x_train, a.x_val, a.x_test)]
    assert sum(len(i) for i in ids) == 1000
    assert len(set(np.concatenate(ids))) == 1000
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (600, 200, 200)


def test_scaler_fitted_on_train_only_and_recorded() -> None:
    t = table()
    d = split_table(t, 0.6, 0.2, seed=1)
    np.testing.assert_allclose(d.x_train.mean(axis=0)[1:], 0, atol=1e-5)
    np.testing.assert_allclose(d.x_train.std(axis=0)[1:], 1, atol=1e-3)
    again = Scaler.from_dict(d.scaler.to_dict())
    raw_test = d.x_test * d.scaler.scale + d.scaler.offset
    np.testing.assert_allclose(again(raw_test), d.x_test, atol=1e-4)


def test_no_scaling_keeps_values() -> None:
    t = table()
    d = split_table(t, 0.6, 0.2, seed=1, scaling="none")
    assert d.x_train.dtype == np.float32
    assert set(np.round(np.concatenate([d.x_train, d.x_val, d.x_test])[:, 0]).astype(int)) == set(range(1000))


def test_max_samples_caps_events() -> None:
    d = split_table(table(), 0.6, 0.2, seed=1, max_samples=100)
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 100


def test_too_few_events() -> None:
    with pytest.raises(DataError, match="too few"):
        split_table(table(3), 0.6, 0.2, seed=1)


def test_user_npz_and_h5(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)).astype(np.float32), rng.integers(0, 2, 50)
    np.savez(tmp_path / "d.npz", features=x, labels=y)
    t = read_source("d.npz", tmp_path, "features", "labels")
    np.testing.assert_array_equal(t.x, x)
    assert t.class_names == ("0", "1")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"] = x
        f["y"] = np.eye(2)[y]  # one-hot labels are accepted
        f.attrs["feature_names"] = ["u", "v", "w"]
    t = read_source("d.h5", tmp_path)
    np.testing.assert_array_equal(t.y, y)
    assert t.feature_names == ("u", "v", "w")


def test_missing_array_key_is_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)))
    with pytest.raises(DataError, match="no array named 'y'"):
        read_source("d.npz", tmp_path)


def test_load_data_from_config(toy_npz: Path) -> None:
    cfg = parse_config({"name": "t", "data": {"source": toy_npz.name}}, toy_npz.parent / "c.yaml")
    d = load_data(cfg.data, cfg.config_dir)
    assert d.n_features == 16 and d.n_classes == 5
    assert d.summary()["n_train"] == 3600


def test_builtin_jet_sample_loads() -> None:
    t = read_source("builtin:jets_hlf")
    assert t.x.shape[1] == 16 and len(t.class_names) == 5
    assert np.bincount(t.y).min() >= 10_000
