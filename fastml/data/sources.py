"""Where events come from: the builtin samples, published data sets and users' files, read into a ``Table``.

``read_source(source)`` dispatches on ``data.source``; ``input_layout`` / ``input_shape`` say what a source
gives without reading a user's file, so a recipe whose model does not fit its data can be rejected at
``fastml validate`` time.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..types import InputLayout
from .anomaly import CALO_SHAPE, OBJECT_FEATURES, event_table, load_adc2021, load_events
from .constituents import DEFAULT_PARTICLE_FEATURES, load_constituents, particle_table
from .jets import load_table
from .published import load_openml_42468, load_published, load_published_particles
from .table import JET_FEATURES, Table

BUILTIN_SAMPLES = {"jets_hlf": "jets_hlf_pythia8.npz", "jets_constituents": "jets_constituents_pythia8.npz",
                   # anomaly detection: one file, two views (trigger objects; calorimeter-region image)
                   "anomaly_objects": "anomaly_events_pythia8.npz", "anomaly_calo": "anomaly_events_pythia8.npz"}




#: What each builtin sample's x holds: per-jet features, or per-particle features (events, particles, features),
#: or an image (events, rows, columns).
BUILTIN_LAYOUTS: dict[str, InputLayout] = {"jets_hlf": "features", "jets_constituents": "particles",
                                           "anomaly_objects": "features", "anomaly_calo": "image"}


#: Builtin samples of event-level trigger data (class 0 = Standard Model, the rest signals).
ANOMALY_SOURCES: tuple[str, ...] = ("builtin:anomaly_objects", "builtin:anomaly_calo")


#: Constituents stored per jet in the builtin particle samples: the default and the most ``data.n_particles``
#: may ask for.
BUILTIN_MAX_PARTICLES: dict[str, int] = {"jets_constituents": 32}


def input_layout(source: str) -> InputLayout | None:
    """``"features"`` (x is (events, features)) or ``"particles"`` (x is (events, particles, features)) for
    a ``data.source``, or None when that is not known without reading a user's file.

    Cheap (no file is opened), so config validation can call it to reject e.g. a particle model on
    per-jet features before anything is built.
    """
    if source.startswith("builtin:"):
        return BUILTIN_LAYOUTS.get(source.split(":", 1)[1])
    if source.startswith("openml:"):
        return "features"  # OpenML 42468 is the high-level-feature table
    if source.startswith("adc2021:"):
        return "features"  # ADC2021: 19 trigger objects x (pT, eta, phi)
    return None


def input_shape(source: str, n_particles: int | None = None,
                particle_features: Sequence[str] | None = None) -> tuple[int, ...] | None:
    """Shape of one event's input for a builtin/OpenML ``data.source`` (and the particle keys), without
    reading data; None for a user's file. Lets config validation check a model's input size early.
    """
    layout = input_layout(source)
    if source == "builtin:anomaly_calo":

        return CALO_SHAPE
    if source == "builtin:anomaly_objects" or source.startswith("adc2021:"):

        return (len(OBJECT_FEATURES),)
    if layout == "features":
        return (len(JET_FEATURES),)
    if layout == "particles":

        n = n_particles if n_particles is not None else BUILTIN_MAX_PARTICLES[source.removeprefix("builtin:")]
        return (n, len(particle_features) if particle_features is not None else len(DEFAULT_PARTICLE_FEATURES))
    return None


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


def _read_arrays(path: Path, x_key: str, y_key: str, n_particles: int | None = None) -> Table:
    """User data as arrays in .npz or HDF5: x (events, features), (events, particles, features) with
    ``n_particles``, or any other per-event shape (images (events, C, H, W) or (events, H, W, C), sequences)."""
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
    # any per-event shape is read as it is (features, particles, images with channels first or last, sequences):
    # the model's input shape decides what fits (checked when the model is built or loaded)
    if x.ndim < 2:
        raise DataError(f"{path}: {x_key!r} has shape {x.shape}, expected (events, features) or (events, ...) with "
                        "one array per event, e.g. (events, 1, 28, 28) for images")
    if 0 in x.shape[1:]:
        raise DataError(f"{path}: {x_key!r} has shape {x.shape}, an event of no values; expected at least one "
                        "value per event on every axis")
    if n_particles is not None:
        if x.ndim != 3:
            raise DataError(f"{path}: data.n_particles needs {x_key!r} of shape (events, particles, features), "
                            f"got {x.shape}")
        if n_particles > x.shape[1]:
            raise DataError(f"{path}: data.n_particles: expected 1..{x.shape[1]} (the particles per event in "
                            f"{x_key!r}), got {n_particles}")
        x = x[:, :n_particles]  # the file's first particles; padding must be all-zero rows at the end
    if y.ndim == 2:  # one-hot labels
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: {y_key!r} has shape {y.shape}, expected ({len(x)},) labels, one per event")
    if not np.issubdtype(x.dtype, np.number) or not np.issubdtype(y.dtype, np.number):
        raise DataError(f"{path}: {x_key!r}/{y_key!r} have dtypes {x.dtype}/{y.dtype}, expected numbers")
    if np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y) & (y == np.round(y))):
        raise DataError(f"{path}: {y_key!r} holds non-integer labels, expected class indices 0, 1, ...")
    y = y.astype(np.int64)
    if len(y) == 0:
        raise DataError(f"{path}: no events in {x_key!r} (expected at least one row)")
    if names and len(names) != x.shape[-1]:
        raise DataError(f"{path}: feature_names has {len(names)} names, {x_key!r} has shape {x.shape}; expected "
                        f"one name per entry of its last axis ({x.shape[-1]})")
    names = names or tuple(f"x{i}" for i in range(x.shape[-1]))
    classes = classes or tuple(str(c) for c in range(int(y.max()) + 1))
    return Table(x.astype(np.float32), y, names, classes, {"source": str(path)})


def _not_particle_data(source: str, what: str) -> DataError:
    return DataError(f"data.source {source!r}: data.n_particles/particle_features apply only to particle data; "
                     f"it has {what}")


def read_source(source: str, config_dir: Path = Path("."), x_key: str = "x", y_key: str = "y",
                n_particles: int | None = None, particle_features: Sequence[str] | None = None) -> Table:
    """Read ``data.source`` (see ``DataConfig``) into a ``Table``; raises ``DataError`` on failure.

    ``n_particles`` (keep the leading N particles) and ``particle_features`` (names from
    ``fastml.data.constituents.PARTICLE_FEATURES``) apply to particle data only; for an HDF5 file (or a
    folder of them) giving either reads particle lists: the hls4ml ``jetConstituentList`` layout, or a
    3-D ``x_key``.
    """
    particle_args = n_particles is not None or particle_features is not None
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        sample = builtin_sample_path(name)
        if source in ANOMALY_SOURCES:
            if particle_args:
                raise _not_particle_data(source, "event-level trigger data")

            return event_table(load_events(sample), "calo" if name == "anomaly_calo" else "objects", source)
        if BUILTIN_LAYOUTS[name] == "particles":

            feats = tuple(particle_features) if particle_features is not None else DEFAULT_PARTICLE_FEATURES
            table = particle_table(load_constituents(sample), n_particles, feats, source)
            return Table(table.x, table.y, table.feature_names, table.class_names, {**table.metadata, "source": source})
        if particle_args:
            raise _not_particle_data(source, "per-jet features")

        table = load_table(sample)
        return Table(table.x, table.y, table.feature_names, table.class_names, {**table.metadata, "source": source})
    if source.startswith("openml:"):
        if source != "openml:42468":
            raise DataError(f"data.source {source!r}: only openml:42468 (the 5-class jet benchmark) is supported")
        if particle_args:
            raise _not_particle_data(source, "per-jet features")

        return load_openml_42468()
    if source.startswith("adc2021:"):

        if particle_args:
            raise _not_particle_data(source, "event-level trigger data")
        return event_table(load_adc2021(config_dir / source.split(":", 1)[1]), "objects", source)
    path = (config_dir / source).resolve()
    if path.is_dir() and particle_args:  # hls4ml particle data comes as a folder of 10 000-jet files

        table = load_published_particles(path, n_particles, particle_features)
        check_table(table, path)
        return table
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        table = _read_file(path, x_key, y_key, n_particles, particle_features)
    except DataError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        # truncated or corrupt files surface as whatever the format library raises; say which file, in one line
        why = " ".join(str(err).split())[:200] or type(err).__name__
        raise DataError(f"{path}: cannot read this {path.suffix or 'data'} file ({type(err).__name__}: {why}); "
                        "expected an intact file of that format") from None
    check_table(table, path)
    return table


def check_table(table: Table, where: Path | str) -> None:
    """Refuse data a model cannot be trained on, in one line naming ``where``.

    No events; features that are not finite numbers (NaN/inf); class labels that are negative, not
    integers, beyond the named classes, or all one class.
    """
    x, y = table.x, table.y
    if len(y) == 0:
        raise DataError(f"{where}: no events (expected at least one row of features and a label)")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{where}: features have dtype {x.dtype}, expected numbers")
    bad = ~np.isfinite(x)
    if bad.any():
        first = np.argwhere(bad)[0]  # (event, ..., feature) whatever the layout
        col = int(first[-1])
        name = table.feature_names[col] if col < len(table.feature_names) else col
        raise DataError(f"{where}: {int(bad.sum())} feature value(s) are NaN or inf (first: event {int(first[0])}, "
                        f"feature {name!r}); expected finite numbers: drop or fill them first")
    if not table.class_names:
        return  # float targets (regression): nothing more to check
    labels = np.asarray(y)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {labels.dtype}, expected integer class indices")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= len(table.class_names):
        raise DataError(f"{where}: labels range from {lo} to {hi}, expected 0..{len(table.class_names) - 1} "
                        f"(classes {', '.join(table.class_names)})")
    if lo == hi:
        raise DataError(f"{where}: every event has label {lo} ({table.class_names[lo]!r}); a classifier needs "
                        "at least two classes")


def _read_file(path: Path, x_key: str, y_key: str, n_particles: int | None = None,
               particle_features: Sequence[str] | None = None) -> Table:
    particle_args = n_particles is not None or particle_features is not None
    if path.suffix in (".h5", ".hdf5") and particle_args and _has_dataset(path, "jetConstituentList"):

        return load_published_particles(path, n_particles, particle_features)
    if particle_features is not None:
        raise DataError(f"{path}: data.particle_features needs an hls4ml particle file (jetConstituentList); "
                        "for your own arrays choose the features when writing them")
    if path.suffix in (".npz", ".h5", ".hdf5"):
        try:
            return _read_arrays(path, x_key, y_key, n_particles)
        except DataError:
            if path.suffix == ".npz" or particle_args:
                raise

            return load_published(path)
    if particle_args:
        raise _not_particle_data(str(path), "per-jet features")
    if path.suffix in (".csv", ".parquet", ".arff"):

        return load_published(path)
    raise DataError(f"data file {path}: unsupported type {path.suffix!r} (expected .npz, .h5, .csv, .parquet, .arff)")


def _has_dataset(path: Path, key: str) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return key in f
    except OSError:
        return False  # not HDF5: the reader that follows says so in one line
