"""Data stage: read a source into a ``Table``, split it reproducibly and scale the inputs.

``load_data(cfg)`` is the one entry point the CLI and notebooks call. The scaling is fitted on the
training split only and recorded (``Dataset.scaler``) so that firmware inputs can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .table import JET_CLASSES, JET_FEATURES, Table

__all__ = ["JET_CLASSES", "JET_FEATURES", "Dataset", "Scaler", "Table", "load_data", "read_source", "split_table"]

BUILTIN_SAMPLES = {"jets_hlf": "jets_hlf_pythia8.npz"}


@dataclass(frozen=True)
class Scaler:
    """Per-feature affine map ``(x - offset) / scale`` applied before the model's input quantiser."""

    offset: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.offset) / self.scale).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list[float]]) -> Scaler:
        return cls(np.asarray(d["offset"], np.float64), np.asarray(d["scale"], np.float64))

    @classmethod
    def fit(cls, x: np.ndarray, kind: str) -> Scaler:
        n = x.shape[1]
        if kind == "none":
            return cls(np.zeros(n), np.ones(n))
        std = x.std(axis=0, dtype=np.float64)
        return cls(x.mean(axis=0, dtype=np.float64), np.where(std > 0, std, 1.0))


@dataclass(frozen=True)
class Dataset:
    """Scaled train/val/test splits. Guarantees: disjoint splits, float32 inputs, int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    scaler: Scaler
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> dict[str, Any]:
        """Sizes and provenance, as recorded in the report."""
        return {
            "source": self.metadata.get("source"),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "features": list(self.feature_names),
            "classes": list(self.class_names),
            "scaler": self.scaler.to_dict(),
        }


def builtin_sample_path(name: str) -> Path:
    """Path of a data sample shipped inside the package."""
    if name not in BUILTIN_SAMPLES:
        raise DataError(f"unknown builtin sample {name!r}; available: {', '.join(BUILTIN_SAMPLES)}")
    path = Path(str(resources.files("fastml.data") / "samples" / BUILTIN_SAMPLES[name]))
    if not path.is_file():
        raise DataError(f"builtin sample {name!r} is missing from the installation (expected {path})")
    return path


def _h5_strings(values: Any) -> tuple[str, ...] | None:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values) or None


def _read_arrays(path: Path, x_key: str, y_key: str) -> Table:
    """User data as arrays in .npz or HDF5."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (x_key, y_key) if k not in f.files]
            if missing:
                raise DataError(
                    f"{path}: no array named {missing[0]!r} (has: {', '.join(f.files)}); set data.x_key/y_key"
                )
            x, y = f[x_key], f[y_key]
            names = tuple(str(n) for n in f["feature_names"]) if "feature_names" in f.files else None
            classes = tuple(str(n) for n in f["class_names"]) if "class_names" in f.files else None
    else:
        import h5py

        with h5py.File(path, "r") as f:
            missing = [k for k in (x_key, y_key) if k not in f]
            if missing:
                raise DataError(f"{path}: no dataset named {missing[0]!r} (has: {', '.join(f)}); set data.x_key/y_key")
            x, y = f[x_key][()], f[y_key][()]
            names = _h5_strings(f.attrs.get("feature_names", ()))
            classes = _h5_strings(f.attrs.get("class_names", ()))
    if x.ndim != 2:
        raise DataError(f"{path}: {x_key!r} has shape {x.shape}, expected (events, features)")
    if y.ndim == 2:  # one-hot labels
        y = y.argmax(axis=1)
    y = y.astype(np.int64)
    names = names or tuple(f"x{i}" for i in range(x.shape[1]))
    classes = classes or tuple(str(c) for c in range(int(y.max()) + 1))
    return Table(x.astype(np.float32), y, names, classes, {"source": str(path)})


def read_source(source: str, config_dir: Path = Path("."), x_key: str = "x", y_key: str = "y") -> Table:
    """Read ``data.source`` (see ``DataConfig``) into a ``Table``; raises ``DataError`` on failure."""
    if source.startswith("builtin:"):
        from .jets import load_table

        table = load_table(builtin_sample_path(source.split(":", 1)[1]))
        return Table(table.x, table.y, table.feature_names, table.class_names, {**table.metadata, "source": source})
    if source.startswith("openml:"):
        if source != "openml:42468":
            raise DataError(f"data.source {source!r}: only openml:42468 (the 5-class jet benchmark) is supported")
        from .published import load_openml_42468

        return load_openml_42468()
    path = (config_dir / source).resolve()
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.suffix in (".npz", ".h5", ".hdf5"):
        try:
            return _read_arrays(path, x_key, y_key)
        except DataError:
            if path.suffix == ".npz":
                raise
            from .published import load_published  # an HDF5 table with the benchmark's columns

            return load_published(path)
    if path.suffix in (".csv", ".parquet", ".arff"):
        from .published import load_published

        return load_published(path)
    raise DataError(f"data file {path}: unsupported type {path.suffix!r} (expected .npz, .h5, .csv, .parquet, .arff)")


def split_table(table: Table, train: float, val: float, seed: int, max_samples: int | None = None,
                scaling: str = "standard") -> Dataset:
    """Shuffle with ``seed``, cut into train/val/test, fit the scaler on train and apply it to all.

    Guarantees: the same (table, fractions, seed) always gives the same split; no event is in two splits.
    """
    n = len(table.y)
    order = np.random.default_rng(seed).permutation(n)
    if max_samples is not None:
        order = order[:max_samples]
    n_used = len(order)
    n_train, n_val = round(train * n_used), round(val * n_used)
    if min(n_train, n_val, n_used - n_train - n_val) < 1:
        raise DataError(f"{n_used} events are too few to split {train:g}/{val:g}/{1 - train - val:g}")
    idx_train, idx_val, idx_test = np.split(order, [n_train, n_train + n_val])
    scaler = Scaler.fit(table.x[idx_train], scaling)
    return Dataset(
        scaler(table.x[idx_train]), table.y[idx_train],
        scaler(table.x[idx_val]), table.y[idx_val],
        scaler(table.x[idx_test]), table.y[idx_test],
        table.feature_names, table.class_names, scaler,
        {**table.metadata, "split_seed": seed},
    )


def load_data(data_cfg: Any, config_dir: Path = Path("."), max_samples: int | None = None) -> Dataset:
    """Read, split and scale the data described by a ``DataConfig``.

    ``max_samples`` (e.g. from ``--quick``) caps the events used, on top of ``data.max_samples``.
    """
    table = read_source(data_cfg.source, config_dir, data_cfg.x_key, data_cfg.y_key)
    caps = [c for c in (data_cfg.max_samples, max_samples) if c is not None]
    split = data_cfg.split
    return split_table(table, split.train, split.val, split.seed, min(caps) if caps else None, data_cfg.scaling)
