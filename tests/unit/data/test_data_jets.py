"""Physics sanity of the shipped Pythia 8 jet sample, and the .npz round trip / lazy-import contract."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fastml.data.jets import generate_jets, load_table, save_table
from fastml.data.table import JET_CLASSES, JET_FEATURES, Table
from fastml.errors import DataError

SAMPLE = Path(__file__).resolve().parents[3] / "fastml" / "data" / "samples" / "jets_hlf_pythia8.npz"


@pytest.fixture(scope="module")
def sample() -> Table:
    if not SAMPLE.is_file():
        pytest.skip(f"shipped sample missing: {SAMPLE}")
    return load_table(SAMPLE)


def _col(table: Table, name: str, cls: str) -> np.ndarray:
    return table.x[table.y == JET_CLASSES.index(cls), JET_FEATURES.index(name)].astype(np.float64)


def _mode(values: np.ndarray, lo: float, hi: float, width: float = 4.0) -> float:
    """Centre of the most populated bin of a histogram on [lo, hi)."""
    counts, edges = np.histogram(values, bins=np.arange(lo, hi + width, width))
    k = int(np.argmax(counts))
    return float(0.5 * (edges[k] + edges[k + 1]))


def test_sample_shape_and_labels(sample: Table) -> None:
    assert sample.feature_names == JET_FEATURES
    assert sample.class_names == JET_CLASSES
    assert sample.x.dtype == np.float32 and sample.y.dtype == np.int64
    counts = np.bincount(sample.y, minlength=len(JET_CLASSES))
    assert counts.tolist() == [counts[0]] * len(JET_CLASSES)
    assert counts.min() >= 10_000


def test_sample_values_finite_and_in_range(sample: Table) -> None:
    x = sample.x
    assert np.isfinite(x).all()

    def col(name: str) -> np.ndarray:
        return x[:, JET_FEATURES.index(name)]

    assert (col("zlogz") <= 0).all()
    mult = col("multiplicity")
    assert (mult >= 1).all() and np.array_equal(mult, np.round(mult)) and mult.max() < 600
    assert ((col("mass_mmdt") >= 0) & (col("mass_mmdt") < 1200)).all()
    # C1^(0) = sum_{i<j} z_i z_j < 1/2; ECF ratios are non-negative.
    assert ((col("c1_b0_mmdt") >= 0) & (col("c1_b0_mmdt") < 0.5)).all()
    for name in JET_FEATURES:
        if name.endswith("_mmdt") and name != "mass_mmdt":
            assert (col(name) >= 0).all(), name


def test_sample_groomed_mass_peaks(sample: Table) -> None:
    for cls, peak, window in (("W", 80.4, 8.0), ("Z", 91.2, 8.0), ("t", 173.0, 15.0)):
        m = _col(sample, "mass_mmdt", cls)
        assert abs(_mode(m, 20.0, 300.0) - peak) < window, cls
        assert abs(np.median(m) - peak) < 2 * window, cls
    for cls in ("q", "g"):
        m = _col(sample, "mass_mmdt", cls)
        # QCD jets are mostly groomed to low mass: most populated bin well below the W.
        assert _mode(m, 0.0, 300.0) < 40.0, cls
        assert np.median(m) < np.median(_col(sample, "mass_mmdt", "W")), cls


def test_sample_two_prong_taggers_separate(sample: Table) -> None:
    for feat in ("n2_b1_mmdt", "d2_b1_mmdt"):
        qcd = min(np.median(_col(sample, feat, c)) for c in ("q", "g"))
        for cls in ("W", "Z"):
            assert np.median(_col(sample, feat, cls)) < qcd, (feat, cls)
    # Gluon jets have more constituents than quark jets (colour factor C_A > C_F).
    assert np.median(_col(sample, "multiplicity", "g")) > np.median(_col(sample, "multiplicity", "q"))


def test_sample_metadata(sample: Table) -> None:
    meta = sample.metadata
    assert set(meta["settings"]["per_class"]) == set(JET_CLASSES)
    assert meta["versions"]["pythia8mc"] and meta["versions"]["fastjet"] and meta["versions"]["numpy"]
    assert all("pythia_seed" in task for task in meta["tasks"])


def test_save_load_round_trip(tmp_path: Path) -> None:
    table = Table(
        x=np.arange(2 * len(JET_FEATURES), dtype=np.float32).reshape(2, -1),
        y=np.array([0, 4]),
        feature_names=JET_FEATURES,
        class_names=JET_CLASSES,
        metadata={"seed": 3, "note": "x"},
    )
    path = tmp_path / "t.npz"
    save_table(table, path)
    back = load_table(path)
    np.testing.assert_array_equal(back.x, table.x)
    np.testing.assert_array_equal(back.y, table.y)
    assert back.feature_names == JET_FEATURES and back.class_names == JET_CLASSES
    assert back.metadata == {"seed": 3, "note": "x"}


def test_generation_without_extra_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # the dev install has the extra: hide it (a None entry in sys.modules makes the import fail)
    monkeypatch.setitem(sys.modules, "pythia8mc", None)
    with pytest.raises(DataError) as info:
        generate_jets(1, progress=False)
    assert str(info.value) == ("jet generation needs the 'generate' extra: pip install -e '.[generate]' "
                               "(in a fastml checkout)")


def test_tiny_generation_is_reproducible() -> None:
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    a = generate_jets(3, seed=11, workers=1, progress=False)
    b = generate_jets(3, seed=11, workers=1, progress=False)
    assert a.x.shape == (15, len(JET_FEATURES))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(np.bincount(a.y), [3] * 5)
