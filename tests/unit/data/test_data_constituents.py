"""Particle-level jet data: the shipped constituents sample, N-D scaling, published hls4ml particle files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from fastml.data import (
    Scaler,
    Table,
    input_layout,
    input_shape,
    load_data,
    padding_mask,
    read_source,
    split_table,
)
from fastml.data.constituents import (
    DEFAULT_PARTICLE_FEATURES,
    PARTICLE_TYPES,
    ConstituentSample,
    load_constituents,
    particle_table,
    save_constituents,
)
from fastml.data.jets import load_table
from fastml.data.published import load_published_particles
from fastml.data.table import JET_CLASSES, JET_FEATURES
from fastml.errors import ConfigError, DataError
from fastml.recipe import DataConfig, parse_config

SAMPLES = Path(__file__).resolve().parents[3] / "fastml" / "data" / "samples"
SAMPLE = SAMPLES / "jets_constituents_pythia8.npz"
HLF_SAMPLE = SAMPLES / "jets_hlf_pythia8.npz"


@pytest.fixture(scope="module")
def sample() -> ConstituentSample:
    if not SAMPLE.is_file():
        pytest.skip(f"shipped sample missing: {SAMPLE}")
    return load_constituents(SAMPLE)


@pytest.fixture(scope="module")
def table32() -> Table:
    if not SAMPLE.is_file():
        pytest.skip(f"shipped sample missing: {SAMPLE}")
    return read_source("builtin:jets_constituents")


# --- the shipped sample -----------------------------------------------------------------------------------


def test_sample_shapes_dtypes_and_balance(sample: ConstituentSample) -> None:
    n = sample.y.shape[0]
    assert sample.particles.shape == (n, 32, 3) and sample.particles.dtype == np.float16
    assert sample.particle_type.dtype == np.int8 and sample.particle_charge.dtype == np.int8
    assert sample.jet.shape == (n, 5) and sample.jet.dtype == np.float32
    assert sample.class_names == JET_CLASSES
    counts = np.bincount(sample.y, minlength=len(JET_CLASSES))
    assert counts.tolist() == [10_000] * len(JET_CLASSES)
    assert np.isfinite(sample.particles.astype(np.float32)).all() and np.isfinite(sample.jet).all()
    assert SAMPLE.stat().st_size < 15e6


def test_sample_padding_is_zero_after_last_real_particle(sample: ConstituentSample) -> None:
    real = sample.mask
    # Once a jet runs out of constituents, every later slot is padding.
    assert not np.any(~real[:, :-1] & real[:, 1:])
    n_real = real.sum(axis=1)
    np.testing.assert_array_equal(n_real, np.minimum(sample.n_constituents, 32))
    assert not sample.particles[~real].any()
    assert not sample.particle_charge[~real].any()
    assert (sample.particles[real][:, 0] > 0).all()  # a real particle has pT > 0, so never looks like padding


def test_sample_kinematics_are_physical(sample: ConstituentSample) -> None:
    kin = sample.particles.astype(np.float64)
    real = sample.mask
    pt_rel = kin[..., 0]
    # pT-ordered
    assert (np.diff(pt_rel, axis=1)[real[:, 1:]] <= 0).all()
    total = pt_rel.sum(axis=1)
    # The scalar sum of all constituents' pT is >= the jet pT (and = for collinear ones); 32 of them
    # carry most of it, so the sum sits just below (or, collinear ones aside, slightly above) 1.
    assert total.max() < 1.1
    assert np.median(total) > 0.9
    assert np.mean(total > 0.8) > 0.9
    # anti-kT (R = 0.8) clusters in rapidity y; we store pseudorapidity eta (what a detector measures). For
    # soft massive hadrons eta and y differ, and a soft particle joined to a subjet can end up a little
    # beyond R of the final axis; so nearly all, and every hard one, lie within R in (eta, phi).
    delta_r = np.hypot(kin[..., 1], kin[..., 2])[real]
    assert np.mean(delta_r <= 0.8) > 0.995
    assert pt_rel[real][delta_r > 0.8].max() < 0.05
    assert np.abs(kin[..., 2][real]).max() < 1.2  # phi is the same in (y, phi) and (eta, phi)
    assert np.percentile(delta_r, 99) < 0.75
    jet = sample.jet
    assert ((jet[:, 0] > 800) & (jet[:, 0] < 1200)).all() and (np.abs(jet[:, 1]) <= 2.4).all()


def test_sample_particle_identity_codes(sample: ConstituentSample) -> None:
    real = sample.mask
    types, charge = sample.particle_type[real], sample.particle_charge[real]
    assert set(np.unique(types)) <= set(range(1, len(PARTICLE_TYPES)))
    for name, charged in (("photon", False), ("neutral_hadron", False), ("charged_hadron", True),
                          ("electron", True), ("muon", True)):
        q = charge[types == PARTICLE_TYPES.index(name)]
        assert (np.abs(q) == (1 if charged else 0)).all(), name
    shares = np.bincount(types, minlength=len(PARTICLE_TYPES)) / types.size
    # hadronisation makes mostly charged hadrons and photons (from pi0 decays)
    assert shares[PARTICLE_TYPES.index("charged_hadron")] > 0.3
    assert shares[PARTICLE_TYPES.index("photon")] > 0.2


def test_sample_rows_are_the_hlf_sample_jets(sample: ConstituentSample) -> None:
    """Same seeds scheme: row i is the same jet as row i of the shipped HLF sample."""
    hlf = load_table(HLF_SAMPLE)
    np.testing.assert_array_equal(hlf.y, sample.y)
    np.testing.assert_array_equal(hlf.x[:, JET_FEATURES.index("multiplicity")], sample.n_constituents)


# --- builtin source, features, truncation -------------------------------------------------------------------


def test_builtin_source_gives_particle_table(table32: Table) -> None:
    assert table32.x.shape == (50_000, 32, len(DEFAULT_PARTICLE_FEATURES))
    assert table32.input_shape == (32, len(DEFAULT_PARTICLE_FEATURES))
    assert table32.feature_names == DEFAULT_PARTICLE_FEATURES
    assert np.isfinite(table32.x).all()
    real = ~padding_mask(table32.x)
    col = {name: table32.x[..., i][real] for i, name in enumerate(table32.feature_names)}
    np.testing.assert_allclose(col["delta_r"], np.hypot(col["deta"], col["dphi"]), rtol=1e-5)
    np.testing.assert_allclose(np.exp(col["log_pt_rel"]), col["pt_rel"], rtol=1e-5)
    # E >= pT and E/E_jet roughly pT/pT_jet for particles near the jet axis
    assert (col["log_e"] >= col["log_pt"] - 1e-6).all()
    assert np.median(np.abs(col["log_e_rel"] - col["log_pt_rel"])) < 0.1
    assert input_shape("builtin:jets_constituents") == table32.input_shape


def test_truncation_to_16_keeps_the_leading_particles(table32: Table) -> None:
    t16 = read_source("builtin:jets_constituents", n_particles=16)
    assert t16.x.shape == (50_000, 16, len(DEFAULT_PARTICLE_FEATURES))
    np.testing.assert_array_equal(t16.x, table32.x[:, :16])
    assert input_shape("builtin:jets_constituents", 16) == t16.input_shape


def test_identity_features_and_too_many_particles(sample: ConstituentSample) -> None:
    small = ConstituentSample(sample.particles[:200], sample.particle_type[:200], sample.particle_charge[:200],
                              sample.jet[:200], sample.n_constituents[:200], None, sample.y[:200], sample.class_names)
    t = particle_table(small, 8, ("pt_rel", "charge", "is_photon", "is_charged_hadron"))
    real = small.mask[:, :8]
    np.testing.assert_array_equal(t.x[..., 1], np.where(real, small.particle_charge[:, :8], 0))
    assert ((t.x[..., 2] + t.x[..., 3])[real] <= 1).all()
    with pytest.raises(DataError, match=r"expected 1\.\.32.*got 33"):
        particle_table(small, 33)
    with pytest.raises(DataError, match="unknown feature 'mass'"):
        particle_table(small, 8, ("pt_rel", "mass"))
    with pytest.raises(DataError, match="add a kinematic feature"):
        particle_table(small, 8, ("charge",))


# --- scaling of particle data ---------------------------------------------------------------------------------


def _toy_particles(n: int = 400, n_part: int = 10, n_feat: int = 3, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(5.0, 2.0, size=(n, n_part, n_feat)).astype(np.float32)
    n_real = rng.integers(1, n_part + 1, size=n)
    x[np.arange(n_part)[None, :] >= n_real[:, None]] = 0.0  # zero-padded after each event's particles
    return Table(x, rng.integers(0, 2, n), tuple(f"f{i}" for i in range(n_feat)), ("a", "b"))


def test_scaler_keeps_padding_zero_and_uses_real_particles_of_train_only() -> None:
    t = _toy_particles()
    d = split_table(t, 0.6, 0.2, seed=3)
    assert d.input_shape == (10, 3) and d.n_features == 3
    order = np.random.default_rng(3).permutation(len(t.y))
    raw_train = t.x[order[:240]]
    real_train = raw_train[~padding_mask(raw_train)]
    np.testing.assert_allclose(d.scaler.offset, real_train.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(d.scaler.scale, real_train.std(axis=0), rtol=1e-6)
    for scaled, raw in ((d.x_train, raw_train), (d.x_test, t.x[order[320:]])):
        pad = padding_mask(raw)
        assert pad.any()
        assert not scaled[pad].any()  # padding stays exactly zero
        np.testing.assert_array_equal(padding_mask(scaled), pad)
    real = d.x_train[~padding_mask(raw_train)]
    np.testing.assert_allclose(real.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(real.std(axis=0), 1, atol=1e-4)
    # a scaler fitted with the padding included would be pulled towards 0: ours is not
    assert (d.scaler.offset > 4).all()


def test_scaler_round_trip_on_particles() -> None:
    t = _toy_particles()
    s = Scaler.fit(t.x, "standard")
    again = Scaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(again(t.x), s(t.x))
    none = Scaler.fit(t.x, "none")
    np.testing.assert_array_equal(none(t.x), t.x)


# --- config keys and layout helper --------------------------------------------------------------------------


def test_input_layout() -> None:
    assert input_layout("builtin:jets_hlf") == "features"
    assert input_layout("builtin:jets_constituents") == "particles"
    assert input_layout("openml:42468") == "features"
    assert input_layout("my_jets.h5") is None
    assert input_shape("builtin:jets_hlf") == (16,)
    assert input_shape("builtin:jets_constituents", 16, ["pt_rel", "deta"]) == (16, 2)
    assert input_shape("data.npz") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "builtin:jets_hlf", "n_particles": 16},
         r"key 'data\.n_particles': applies only to particle data .*got data\.source 'builtin:jets_hlf'"),
        ({"source": "openml:42468", "particle_features": ["pt_rel"]},
         r"key 'data\.particle_features': applies only to particle data"),
        ({"source": "builtin:jets_constituents", "n_particles": 64},
         r"key 'data\.n_particles': builtin:jets_constituents stores 32 constituents.*got 64"),
        ({"source": "builtin:jets_constituents", "n_particles": 0}, r"key 'data.n_particles'"),
        ({"source": "builtin:jets_constituents", "particle_features": ["pt_rel", "mass"]},
         r"key 'data.particle_features'.*got \['mass'\]"),
    ],
)
def test_bad_particle_keys_fail_validation_in_one_line(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config({"name": "t", "data": data}, "recipe.yaml")
    assert "\n" not in str(err.value) and str(err.value).startswith("recipe.yaml: ")


def test_particle_keys_accepted_for_particle_data() -> None:
    # the data section alone: whether a model kind takes particles is the model section's business
    data = DataConfig.model_validate({"source": "builtin:jets_constituents", "n_particles": 16,
                                      "particle_features": ["pt_rel", "deta", "dphi"]})
    assert data.n_particles == 16 and data.particle_features == ["pt_rel", "deta", "dphi"]


def test_read_source_refuses_particle_keys_on_feature_data() -> None:
    with pytest.raises(DataError, match="apply only to particle data"):
        read_source("builtin:jets_hlf", n_particles=16)


# --- published hls4ml particle files -------------------------------------------------------------------------

#: particleFeatureNames of the hls4ml LHC jet particle files, in their order.
HLS4ML_PARTICLE_NAMES = ("j1_px", "j1_py", "j1_pz", "j1_e", "j1_erel", "j1_pt", "j1_ptrel", "j1_eta",
                         "j1_etarel", "j1_etarot", "j1_phi", "j1_phirel", "j1_phirot", "j1_deltaR",
                         "j1_costheta", "j1_costhetarel")


def write_hls4ml_particle_file(path: Path, n_jets: int = 12, n_part: int = 30, seed: int = 0,
                               drop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A tiny file in the hls4ml particle layout; constituents deliberately NOT pT-sorted.

    Returns (pt (jets, n_part) as written, labels)."""
    rng = np.random.default_rng(seed)
    n_real = rng.integers(3, n_part, size=n_jets)
    jet_pt, jet_eta, jet_phi = rng.uniform(800, 1200, n_jets), rng.uniform(-2, 2, n_jets), rng.uniform(-3, 3, n_jets)
    const = np.zeros((n_jets, n_part, len(HLS4ML_PARTICLE_NAMES)), dtype=np.float32)
    pts = np.zeros((n_jets, n_part))
    col = {name: i for i, name in enumerate(HLS4ML_PARTICLE_NAMES)}
    for j in range(n_jets):
        k = n_real[j]
        pt = rng.exponential(30.0, k) + 1.0
        deta, dphi = rng.uniform(-0.7, 0.7, k), rng.uniform(-0.7, 0.7, k)
        eta, phi = jet_eta[j] + deta, jet_phi[j] + dphi
        e = pt * np.cosh(eta)
        slots = rng.permutation(n_part)[:k]  # real particles scattered among the slots
        pts[j, slots] = pt
        for name, v in (("j1_pt", pt), ("j1_ptrel", pt / jet_pt[j]), ("j1_etarel", deta), ("j1_phirel", dphi),
                        ("j1_eta", eta), ("j1_phi", phi), ("j1_e", e), ("j1_erel", e / (jet_pt[j] * 1.5)),
                        ("j1_px", pt * np.cos(phi)), ("j1_py", pt * np.sin(phi)), ("j1_pz", pt * np.sinh(eta)),
                        ("j1_deltaR", np.hypot(deta, dphi))):
            const[j, slots, col[name]] = v
    labels = np.arange(n_jets) % 5
    jet_names = ["j_ptfrac", "j_pt", "j_eta", "j_mass", "j_g", "j_q", "j_w", "j_z", "j_t", "j_undef"]
    jets = np.zeros((n_jets, len(jet_names)), dtype=np.float32)
    jets[:, 1] = jet_pt
    jets[np.arange(n_jets), 4 + labels] = 1.0
    datasets = {
        "jetConstituentList": const,
        "particleFeatureNames": np.array([n.encode() for n in HLS4ML_PARTICLE_NAMES]),
        "jets": jets,
        "jetFeatureNames": np.array([n.encode() for n in jet_names]),
        "jetImage": np.zeros((n_jets, 4, 4), dtype=np.float32),
    }
    with h5py.File(path, "w") as fh:
        for key, value in datasets.items():
            if key != drop:
                fh.create_dataset(key, data=value)
    return pts, labels


def test_published_particle_file_is_read_sorted_and_mapped(tmp_path: Path) -> None:
    file = tmp_path / "jetImage_0_30p_0_12.h5"
    pts, labels = write_hls4ml_particle_file(file)
    t = load_published_particles(file)
    assert t.x.shape == (12, 30, len(DEFAULT_PARTICLE_FEATURES)) and t.x.dtype == np.float32
    assert t.class_names == JET_CLASSES
    np.testing.assert_array_equal(t.y, labels)
    log_pt = t.x[..., DEFAULT_PARTICLE_FEATURES.index("log_pt")]
    expected = -np.sort(-pts, axis=1)  # leading first, padding (0) last
    real = expected > 0
    np.testing.assert_allclose(np.exp(log_pt[real]), expected[real], rtol=1e-5)
    assert not t.x[~real].any()
    np.testing.assert_array_equal(padding_mask(t.x), ~real)
    col = {name: t.x[..., i] for i, name in enumerate(t.feature_names)}
    np.testing.assert_allclose(col["delta_r"][real], np.hypot(col["deta"], col["dphi"])[real], rtol=1e-5)
    # truncation keeps the leading particles
    t8 = load_published_particles(file, n_particles=8)
    np.testing.assert_array_equal(t8.x, t.x[:, :8])


def test_published_particles_through_config_and_load_data(tmp_path: Path) -> None:
    folder = tmp_path / "train"
    folder.mkdir()
    write_hls4ml_particle_file(folder / "a_30p.h5", n_jets=40, seed=1)
    write_hls4ml_particle_file(folder / "b_30p.h5", n_jets=35, seed=2)
    recipe = tmp_path / "r.yaml"
    cfg = parse_config({"name": "t", "data": {"source": "train", "n_particles": 16,
                                              "particle_features": ["pt_rel", "deta", "dphi", "log_e"]}}, recipe)
    assert input_layout(cfg.data.source) is None  # a user's folder: not known without reading it
    data = load_data(cfg.data, cfg.config_dir)
    assert data.input_shape == (16, 4)
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 75
    assert data.summary()["input_shape"] == [16, 4]
    # the same file without particle keys is read as the per-jet table (and fails: no HLF columns here)
    with pytest.raises(DataError):
        read_source("a_30p.h5", folder)


def test_published_particle_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "no_constituents.h5"
    write_hls4ml_particle_file(bad, drop="jetConstituentList")
    with pytest.raises(DataError, match=r"no_constituents\.h5: no dataset 'jetConstituentList'") as err:
        load_published_particles(bad)
    assert "\n" not in str(err.value)
    no_names = tmp_path / "no_names.h5"
    write_hls4ml_particle_file(no_names, drop="particleFeatureNames")
    with pytest.raises(DataError, match=r"no_names\.h5: no dataset 'particleFeatureNames'"):
        read_source("no_names.h5", tmp_path, n_particles=10)
    good = tmp_path / "good.h5"
    write_hls4ml_particle_file(good)
    with pytest.raises(DataError, match=r"good\.h5: data\.n_particles: expected 1\.\.30.*got 50"):
        load_published_particles(good, n_particles=50)
    with pytest.raises(DataError, match="needs particle identity"):
        load_published_particles(good, features=["pt_rel", "charge"])
    with pytest.raises(DataError, match="jet particle file not found"):
        load_published_particles(tmp_path / "missing.h5")
    with pytest.raises(DataError, match=r"no \.h5 files"):
        (tmp_path / "empty").mkdir()
        load_published_particles(tmp_path / "empty")


def test_user_arrays_with_particles(tmp_path: Path) -> None:
    t = _toy_particles(n=50)
    np.savez(tmp_path / "p.npz", x=t.x, y=t.y)
    got = read_source("p.npz", tmp_path, n_particles=4)
    np.testing.assert_array_equal(got.x, t.x[:, :4])
    # without data.n_particles the file is read as it is (every particle): any per-event shape is, the model decides
    np.testing.assert_array_equal(read_source("p.npz", tmp_path).x, t.x)
    with pytest.raises(DataError, match=r"expected 1\.\.10.*got 11"):
        read_source("p.npz", tmp_path, n_particles=11)


def test_constituents_file_round_trip_and_bad_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 6
    parts = np.zeros((n, 4, 3), np.float16)
    parts[:, :2] = rng.uniform(0.1, 0.5, (n, 2, 3))
    types = np.zeros((n, 4), np.int8)
    types[:, :2] = 4
    s = ConstituentSample(parts, types, np.zeros((n, 4), np.int8), rng.uniform(900, 1000, (n, 5)).astype(np.float32),
                          np.full(n, 2, np.int16), None, np.arange(n) % 2, ("a", "b"), {"note": "toy"})
    save_constituents(s, tmp_path / "c.npz")
    back = load_constituents(tmp_path / "c.npz")
    np.testing.assert_array_equal(back.particles, parts)
    assert back.hlf is None and back.metadata == {"note": "toy"} and back.y.dtype == np.int64
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"other\.npz: not a jet-constituents file, no array 'particles'"):
        load_constituents(tmp_path / "other.npz")


# --- the generator (needs the 'generate' extra) ------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("pythia8mc") is None or importlib.util.find_spec("fastjet") is None,
    reason="pythia8mc/fastjet not installed (the 'generate' extra)",
)
def test_generator_keeps_constituents_of_the_same_jets(tmp_path: Path) -> None:
    from fastml.data.jets import generate_jet_constituents, generate_jets

    s = generate_jet_constituents(2, seed=5, workers=1, progress=False, n_particles=16)
    hlf = generate_jets(2, seed=5, workers=1, progress=False)
    np.testing.assert_array_equal(s.hlf, hlf.x)  # keeping constituents changes no jet
    np.testing.assert_array_equal(s.y, hlf.y)
    assert s.particles.shape == (10, 16, 3) and s.particles.dtype == np.float16
    real = s.mask
    np.testing.assert_array_equal(real.sum(axis=1), np.minimum(s.n_constituents, 16))
    assert (np.diff(s.particles[..., 0].astype(np.float32), axis=1)[real[:, 1:]] <= 0).all()
    assert s.metadata["constituents"]["n_particles"] == 16
    save_constituents(s, tmp_path / "g.npz")
    t = particle_table(load_constituents(tmp_path / "g.npz"))
    assert t.x.shape == (10, 16, len(DEFAULT_PARTICLE_FEATURES))
