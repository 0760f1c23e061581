"""Anomaly-detection triggers (issue #17): event data, the autoencoder and conv kinds, recipes, the budget on
signal efficiency at a rate. Trigger metrics: tests/unit/test_metrics.py; the two quick builds (autoencoder
teacher; conv student): tests/integration/test_anomaly.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError, DataError
from fastml.recipe import load_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = REPO / "configs"


# ---------------------------------------------------------------- data


@pytest.fixture(scope="module")
def shipped():
    from fastml.data import builtin_sample_path
    from fastml.data.anomaly import load_events

    return load_events(builtin_sample_path("anomaly_objects"))


def test_shipped_sample_layout_and_provenance(shipped) -> None:
    from fastml.data.anomaly import N_OBJECTS, SIGNAL_PROCESSES, SM_PROCESSES

    assert shipped.objects.shape == (shipped.n_events, N_OBJECTS, 3)
    assert shipped.class_names == ("sm", *SIGNAL_PROCESSES)
    counts = np.bincount(shipped.y, minlength=len(shipped.class_names))
    assert all(c >= 5000 for c in counts[1:]), counts  # >= 5 000 events per signal
    # the SM processes stand in ADC2021's cocktail fractions (within one event of rounding)
    sm_proc = shipped.process[shipped.y == 0]
    names = shipped.process_names
    for name, proc in SM_PROCESSES.items():
        share = np.mean(sm_proc == names.index(name))
        assert share == pytest.approx(proc.sm_fraction / sum(p.sm_fraction for p in SM_PROCESSES.values()), abs=2e-3)
    # MET has eta 0; every object class is pT-ordered and zero-padded
    assert np.all(shipped.objects[:, 0, 1] == 0)
    for lo, hi in ((1, 5), (5, 9), (9, 19)):
        pt = shipped.objects[:, lo:hi, 0]
        assert np.all(np.diff(pt, axis=1) <= 0)
        assert np.all(shipped.objects[:, lo:hi][pt == 0] == 0)
    # events passing the lepton filter: all but QCD
    lep = shipped.objects[:, 1:9, 0].max(axis=1) >= 23.0 - 1 / 64  # filtered in float64, stored as float16
    assert np.all(lep[shipped.process != names.index("qcd")])
    assert set(shipped.metadata["counts"]) == set(names)


def test_calorimeter_image_is_built_from_the_deposits(shipped) -> None:
    from fastml.data.anomaly import CALO_LSB_GEV, CALO_SHAPE

    rows = np.array([0, 5, 17, shipped.n_events - 1])
    images = shipped.calo_images(rows)
    assert images.shape == (4, *CALO_SHAPE)
    starts = np.r_[0, np.cumsum(shipped.calo_count)]
    for k, r in enumerate(rows):
        et = shipped.calo_et[starts[r]:starts[r + 1]].astype(float) * CALO_LSB_GEV
        assert images[k].sum() == pytest.approx(et.sum())
        assert np.count_nonzero(images[k]) == shipped.calo_count[r]


def test_builtin_sources_and_sm_only_scaling() -> None:
    from fastml.data import input_shape, read_source, split_table

    objects = read_source("builtin:anomaly_objects")
    calo = read_source("builtin:anomaly_calo")
    assert objects.x.shape[1:] == (57,) and calo.x.shape[1:] == (18, 14)
    assert np.array_equal(objects.y, calo.y)
    assert input_shape("builtin:anomaly_objects") == (57,) and input_shape("builtin:anomaly_calo") == (18, 14)
    ds = split_table(objects, 0.5, 0.1, 42)
    raw = objects.x[np.random.default_rng(42).permutation(len(objects.y))[: len(ds.y_train)]]
    sm = raw[ds.y_train == 0]
    assert np.allclose(ds.scaler.offset, sm.mean(axis=0), rtol=1e-5, atol=1e-4)  # fitted on SM events only


def _write_adc(folder: Path, n: int, signals: dict[str, float]) -> None:
    import h5py

    rng = np.random.default_rng(3)
    folder.mkdir()
    for stem, shift in {"background_for_training": 0.0, **signals}.items():
        p = np.abs(rng.normal(shift + 10, 3, size=(n, 19, 4)))
        p[:, :, 3] = [0, *[2] * 4, *[3] * 4, *[4] * 10]
        with h5py.File(folder / f"{stem}.h5", "w") as f:
            f["Particles"] = p
            f["Particles_Names"] = [b"Pt", b"Eta", b"Phi", b"Class"]


def test_a_users_adc2021_copy_loads(tmp_path: Path) -> None:
    from fastml.data import read_source

    _write_adc(tmp_path / "adc", 50, {"Ato4l_lepFilter_13TeV": 5.0, "leptoquark_LOWMASS_lepFilter_13TeV": 2.0})
    table = read_source("adc2021:adc", tmp_path)
    assert table.class_names == ("sm", "ato4l", "leptoquark")
    assert table.x.shape == (150, 57) and np.bincount(table.y).tolist() == [50, 50, 50]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "background_for_training.h5").write_bytes(b"not hdf5")
    (bad / "x.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match=r"background_for_training.h5: cannot read this HDF5 file"):
        read_source("adc2021:bad", tmp_path)


def test_corrupt_event_sample_is_one_line(tmp_path: Path) -> None:
    from fastml.data.anomaly import load_events

    p = tmp_path / "events.npz"
    p.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(DataError) as err:
        load_events(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_event_reduction_is_seeded_and_fills_the_adc_layout() -> None:
    fastjet = pytest.importorskip("fastjet")
    from fastml.data.anomaly import reduce_event

    rng = np.random.default_rng(5)
    # an isolated 40 GeV electron, a 30 GeV muon, a spray of hadrons making a jet, a neutrino-like imbalance
    pid = np.r_[11, 13, np.full(20, 211)]
    p4 = np.zeros((22, 4))
    p4[0] = (40, 0, 0, 40)
    p4[1] = (0, 30, 10, np.hypot(30, 10))
    p4[2:, 0] = -3.0 + rng.normal(0, 0.1, 20)
    p4[2:, 1] = -1.0 + rng.normal(0, 0.1, 20)
    p4[2:, 2] = rng.normal(0, 0.2, 20)
    p4[2:, 3] = np.linalg.norm(p4[2:, :3], axis=1)
    a = reduce_event(pid, p4, np.random.default_rng(9), fastjet)
    b = reduce_event(pid, p4, np.random.default_rng(9), fastjet)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    objects = a[0]
    assert objects[1, 0] == pytest.approx(40, rel=0.3) and objects[2, 0] == 0  # one e/gamma
    assert objects[5, 0] == pytest.approx(30, rel=0.6) and objects[6, 0] == 0  # one muon
    assert objects[9, 0] > 15 and objects[10, 0] == 0  # one jet
    assert objects[0, 0] > 0 and objects[0, 1] == 0  # MET, eta 0


# ---------------------------------------------------------------- recipes


def _recipe(tmp_path: Path, base: str, **changes) -> Path:
    import yaml

    doc = yaml.safe_load((CONFIGS / base).read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        doc[section][key] = value
    out = tmp_path / base
    out.write_text(yaml.safe_dump(doc))
    if base == "calo_conv.yaml":
        shutil.copy(CONFIGS / "anomaly_ae.yaml", tmp_path / "anomaly_ae.yaml")
    return out


def test_both_recipes_validate() -> None:
    assert load_config(CONFIGS / "anomaly_ae.yaml").model.kind == "autoencoder"
    assert load_config(CONFIGS / "calo_conv.yaml").model.kind == "conv"


@pytest.mark.parametrize(("base", "changes", "message"), [
    ("anomaly_ae.yaml", {"model__latent": 60}, r"model.latent 60 must be smaller than the 57 input features"),
    ("anomaly_ae.yaml", {"data__source": "builtin:jets_hlf"}, r"key 'data.source': .*'builtin:jets_hlf' holds jets"),
    ("anomaly_ae.yaml", {"data__source": "builtin:anomaly_calo"}, r"calorimeter image is for model.kind 'conv'"),
    ("calo_conv.yaml", {"data__source": "builtin:jets_constituents"}, r"holds jets, not events"),
    ("calo_conv.yaml", {"model__teacher": "nowhere.yaml"}, r"key 'model.teacher': recipe .*nowhere.yaml does not"),
    ("calo_conv.yaml", {"model__filters": [4, 8, 8, 8]}, r"shrink the \(18, 14\) image to nothing"),
    ("calo_conv.yaml", {"model__input_pool": 3}, r"key 'model.input_pool': must be 1, 2 or 4 .*got 3"),
    ("calo_conv.yaml", {"model__input_pool": 4},
     r"1 conv\+pool stages .* image to nothing averaged 4 x 4 \(model.input_pool\)"),
    ("calo_conv.yaml", {"data__split": {"train": 0.6, "val": 0.2, "test": 0.2, "seed": 1}},
     r"split and max_samples must equal the teacher's"),
])
def test_bad_sections_fail_in_one_line(tmp_path: Path, base: str, changes: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(_recipe(tmp_path, base, **changes))
    assert "\n" not in str(err.value) and base in str(err.value)


@pytest.mark.slow
def test_pooled_conv_student_is_bit_exact_through_da4ml() -> None:
    """The recipe's kind of student (2 x 2 input average, one conv, max pool, dense) with random weights,
    calibrated and traced by da4ml: the emulator equals Keras exactly on calorimeter-like images."""
    import keras
    from hgq.utils import trace_minmax

    from fastml._internal.da4ml import trace_keras
    from fastml.models import kind_of

    cfg = load_config(CONFIGS / "calo_conv.yaml")
    assert cfg.model.input_pool == 2
    # fewer units than the recipe: the same layer types, a smaller da4ml trace (seconds instead of minutes)
    net = kind_of(load_config(CONFIGS / "calo_conv.yaml", overrides={"model": {"filters": [2], "dense": [4]}}))
    keras.utils.set_random_seed(1)
    model = net.build((18, 14), 1)
    assert model.get_layer("input_pool").output.shape[1:3] == (9, 7)
    rng = np.random.default_rng(2)
    x = (rng.exponential(4.0, size=(300, 18, 14)) * (rng.random((300, 18, 14)) < 0.3)).astype(np.float32)
    trace_minmax(model, x)
    ref = model.predict(x, verbose=0)
    emulated = trace_keras(model).predict(x.reshape(len(x), -1)).reshape(ref.shape)
    assert np.array_equal(ref, emulated)
    assert np.unique(ref).size > 10, "a constant model would make this comparison meaningless"


def test_variational_autoencoder_loss_and_deployed_part() -> None:
    """variational: true adds the KL term to the loss; the deployed part stays encoder -> mu -> sum(mu^2)."""
    import keras

    from fastml.models import kind_of
    from fastml.models.autoencoder import _recon_loss

    x = np.zeros((1, 4), np.float32)
    # reconstruction exact, score sum(mu^2) = 2, log sigma (0, ln 2): KL = 0.5 * (2 + 0 + (4 - 1 - 2 ln 2))
    y_pred = np.array([[0, 0, 0, 0, 2.0, 0.0, np.log(2.0)]], np.float32)
    kl = 0.5 * (2.0 + 3.0 - 2 * np.log(2.0))
    assert float(_recon_loss(4, 0.5, variational=True)(x, y_pred)[0]) == pytest.approx(0.5 * kl, rel=1e-5)
    assert float(_recon_loss(4, 0.5)(x, y_pred[:, :5])[0]) == pytest.approx(1.0)  # plain: 0.5 * sum(mu^2)

    cfg = load_config(CONFIGS / "anomaly_ae.yaml", overrides={"model": {"variational": True}})
    net = kind_of(cfg)
    keras.utils.set_random_seed(0)
    model = net.build((57,), 1)
    assert model.output_shape == (None, 57 + 1 + cfg.model.latent)  # reconstruction, score, log sigma
    deployed = net.deployed(model)
    assert deployed.output_shape == (None, 1)
    assert not any(layer.name.startswith(("latent_log_sigma", "latent_noise", "dec_")) for layer in deployed.layers)
    xs = np.random.default_rng(0).normal(size=(64, 57)).astype(np.float32)
    full = model.predict(xs, verbose=0)
    assert np.array_equal(full, model.predict(xs, verbose=0))  # no sampling at inference: z = mu
    assert np.array_equal(deployed.predict(xs, verbose=0)[:, 0], full[:, 57])


def test_budget_on_signal_efficiency_at_rate() -> None:
    from fastml.gate import check_budgets
    from fastml.recipe import BudgetsConfig
    from fastml.report import Report, VerificationLevel

    fig = {"sm_events": 50_000, "rates": {"1kHz": {"threshold": 2.0}, "10kHz": {"threshold": 1.0}},
           "signals": {"a": {"auc": 0.9, "efficiency": {"1kHz": 0.05, "10kHz": 0.4}},
                       "b": {"auc": 0.8, "efficiency": {"1kHz": "not run: too few SM events", "10kHz": 0.1}}}}
    report = Report(name="ad", backend="rtl", verification={"emulator": VerificationLevel(samples=10, mismatches=0)},
                    task={"task": "anomaly_detection", "levels": {"quantized_test_split": fig}})
    rows = {r.metric: r for r in check_budgets(
        report, BudgetsConfig(min_signal_efficiency_at_rate={"10kHz": 0.2, "1kHz": 0.01})).rows}
    assert rows["signal_efficiency@10kHz[a]"].status == "pass"
    assert rows["signal_efficiency@10kHz[b]"].status == "fail"
    assert rows["signal_efficiency@1kHz[a]"].status == "pass"
    assert rows["signal_efficiency@1kHz[b]"].status == "not run"
    plain = check_budgets(Report(name="x", backend="rtl"), BudgetsConfig(min_signal_efficiency_at_rate={"1kHz": 0.1}))
    assert [r.status for r in plain.rows if r.metric.startswith("signal")] == ["not run"]
