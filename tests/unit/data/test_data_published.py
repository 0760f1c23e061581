"""Round trips of the published-benchmark readers (ARFF, CSV, HDF5, parquet) on small files."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

from fastml.data.published import ONE_HOT_COLUMNS, load_openml_42468, load_published
from fastml.data.table import JET_CLASSES, JET_FEATURES, Table
from fastml.errors import DataError

# Class column as published on OpenML (lower case), in a mixed order.
CLASS_VALUES = ["g", "q", "w", "z", "t", "t", "w", "g"]
EXPECTED_Y = np.array([0, 1, 2, 3, 4, 4, 2, 0], dtype=np.int64)


@pytest.fixture()
def values() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(CLASS_VALUES), len(JET_FEATURES))).astype(np.float32)
    x[:, -1] = rng.integers(5, 80, len(CLASS_VALUES))  # multiplicity is an integer count
    return x


def _check(table: Table, values: np.ndarray) -> None:
    assert table.feature_names == JET_FEATURES
    assert table.class_names == JET_CLASSES
    assert table.x.dtype == np.float32 and table.y.dtype == np.int64
    np.testing.assert_allclose(table.x, values, rtol=1e-6)
    np.testing.assert_array_equal(table.y, EXPECTED_Y)


def _write_arff(path: Path, values: np.ndarray, classes: list[str]) -> None:
    lines = ["% OpenML 42468 style", "@RELATION hls4ml_lhc_jets_hlf", ""]
    lines += [f"@ATTRIBUTE {name} NUMERIC" for name in JET_FEATURES]
    lines += ["@ATTRIBUTE class {g,q,t,w,z}", "", "@DATA"]
    for row, cls in zip(values, classes, strict=True):
        lines.append(",".join(repr(float(v)) for v in row) + f",'{cls}'")
    path.write_text("\n".join(lines) + "\n")


def test_arff(tmp_path: Path, values: np.ndarray) -> None:
    path = tmp_path / "hls4ml_lhc_jets_hlf.arff"
    _write_arff(path, values, CLASS_VALUES)
    table = load_published(path)
    _check(table, values)
    assert table.metadata["format"] == "arff"


def test_csv_with_upper_case_classes_and_index(tmp_path: Path, values: np.ndarray) -> None:
    path = tmp_path / "jets.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", *JET_FEATURES, "class"])  # pandas-style unnamed index column
        for i, (row, cls) in enumerate(zip(values, CLASS_VALUES, strict=True)):
            writer.writerow([i, *[repr(float(v)) for v in row], cls.upper()])
    _check(load_published(path), values)


def test_csv_one_hot_with_j_prefix(tmp_path: Path, values: np.ndarray) -> None:
    path = tmp_path / "jets_onehot.csv"
    onehot = np.eye(len(JET_CLASSES), dtype=int)[EXPECTED_Y]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([f"j_{f}" for f in JET_FEATURES] + list(ONE_HOT_COLUMNS))
        for row, hot in zip(values, onehot, strict=True):
            writer.writerow([repr(float(v)) for v in row] + hot.tolist())
    _check(load_published(path), values)


def test_hdf5_per_column_datasets(tmp_path: Path, values: np.ndarray) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "jets.h5"
    with h5py.File(path, "w") as fh:
        for i, name in enumerate(JET_FEATURES):
            fh[name] = values[:, i]
        fh["class"] = np.array(CLASS_VALUES, dtype="S1")
    _check(load_published(path), values)


def test_hdf5_hls4ml_jets_matrix(tmp_path: Path, values: np.ndarray) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "jetImage_like.h5"
    names = [f"j_{f}" for f in JET_FEATURES] + list(ONE_HOT_COLUMNS) + ["j_undef"]
    onehot = np.eye(len(JET_CLASSES))[EXPECTED_Y]
    data = np.concatenate([values, onehot, np.zeros((len(values), 1))], axis=1)
    with h5py.File(path, "w") as fh:
        fh["jets"] = data
        fh["jetFeatureNames"] = np.array([n.encode() for n in names])
    _check(load_published(path), values)


def test_hdf5_compound_table(tmp_path: Path, values: np.ndarray) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "jets_table.hdf5"
    dtype = [(name, "f4") for name in JET_FEATURES] + [("class", "S1")]
    rec = np.zeros(len(values), dtype=dtype)
    for i, name in enumerate(JET_FEATURES):
        rec[name] = values[:, i]
    rec["class"] = CLASS_VALUES
    with h5py.File(path, "w") as fh:
        fh["table"] = rec
    _check(load_published(path), values)


def test_parquet(tmp_path: Path, values: np.ndarray) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "jets.parquet"
    cols = {name: values[:, i] for i, name in enumerate(JET_FEATURES)}
    cols["class"] = np.array(CLASS_VALUES)
    pq.write_table(pa.table(cols), path)
    _check(load_published(path), values)


def test_unknown_class_and_missing_column_are_data_errors(tmp_path: Path, values: np.ndarray) -> None:
    bad = tmp_path / "bad.arff"
    _write_arff(bad, values, ["g", "q", "w", "z", "t", "t", "w", "x"])
    with pytest.raises(DataError, match="unknown class"):
        load_published(bad)
    short = tmp_path / "short.csv"
    short.write_text("zlogz,class\n0.1,g\n")
    with pytest.raises(DataError, match="missing feature column"):
        load_published(short)
    with pytest.raises(DataError, match="unknown jet data format"):
        load_published(_touch(tmp_path / "x.txt"))
    with pytest.raises(DataError, match="not found"):
        load_published(tmp_path / "absent.csv")


def _touch(path: Path) -> Path:
    path.write_text("")
    return path


def test_openml_cache_found(tmp_path: Path, values: np.ndarray) -> None:
    _write_arff(tmp_path / "hls4ml_lhc_jets_hlf.arff", values, CLASS_VALUES)
    table = load_openml_42468(cache_dir=tmp_path)
    _check(table, values)
    assert "42468" in table.metadata["dataset"]


def test_openml_env_var_overrides_default(
    tmp_path: Path, values: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "openml").mkdir()
    _write_arff(tmp_path / "openml" / "hls4ml_lhc_jets_hlf.arff", values, CLASS_VALUES)
    monkeypatch.setenv("FASTML_DATA_DIR", str(tmp_path))
    _check(load_openml_42468(), values)


def test_openml_missing_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTML_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as info:
        load_openml_42468()
    msg = str(info.value)
    assert "\n" not in msg
    assert "hls4ml_lhc_jets_hlf.arff" in msg
    assert str(tmp_path / "openml") in msg


def test_parquet_without_pyarrow_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes "import pyarrow..." fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = _touch(tmp_path / "jets.parquet")
    with pytest.raises(DataError, match="needs pyarrow") as info:
        load_published(path)
    assert "\n" not in str(info.value)
