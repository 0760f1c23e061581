"""Anomaly-detection triggers (issue #17): event data, trigger metrics, the autoencoder and conv kinds, recipes.

The two quick builds (autoencoder teacher; conv student, whose teacher trains inside its build) are shared
session fixtures; everything else is fast.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError, DataError
from fastml.recipe import load_config

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


# ---------------------------------------------------------------- trigger metrics


def test_roc_auc_matches_pairwise_counting_with_ties() -> None:
    from fastml.metrics import roc_auc

    rng = np.random.default_rng(0)
    b = rng.integers(0, 5, 300).astype(float)  # quantised scores: many ties
    s = rng.integers(1, 7, 200).astype(float)
    pairs = (s[:, None] > b[None, :]).mean() + 0.5 * (s[:, None] == b[None, :]).mean()
    assert roc_auc(b, s) == pytest.approx(pairs, abs=1e-12)
    assert roc_auc(b, b) == pytest.approx(0.5)


def test_threshold_never_accepts_more_sm_than_asked() -> None:
    from fastml.metrics import threshold_at_acceptance

    sm = np.repeat(np.arange(100.0), 10)  # 1000 events, ties of 10
    t, achieved = threshold_at_acceptance(sm, 0.025)  # 25 allowed: ties make it 20
    assert achieved <= 0.025 and np.mean(sm > t) == achieved
    assert achieved == pytest.approx(0.02)


def test_efficiency_at_rate_says_not_run_when_the_sample_is_too_small() -> None:
    from fastml.metrics import efficiency_at_rates

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(5000, int), np.ones(500, int)]
    scores = np.r_[rng.normal(size=5000), rng.normal(3.0, 1.0, 500)]
    out = efficiency_at_rates(scores, labels, ("sm", "sig"), rates_hz=(1_000.0, 10_000.0))
    assert out["rates"]["1kHz"].startswith("not run: acceptance 2.5e-05 needs at least 40000 SM events")
    assert out["signals"]["sig"]["efficiency"]["1kHz"].startswith("not run")
    ten = out["rates"]["10kHz"]
    assert ten["sm_passing"] == 1  # 5000 x 2.5e-4 = 1.25 -> one SM event above the threshold
    eff = out["signals"]["sig"]["efficiency"]["10kHz"]
    assert eff == pytest.approx(np.mean(scores[5000:] > ten["threshold"]))
    assert 0.5 < out["signals"]["sig"]["auc"] <= 1.0


def test_teacher_agreement() -> None:
    from fastml.metrics import teacher_agreement

    t = np.linspace(0, 1, 100)
    assert teacher_agreement(2 * t + 1, t)["spearman"] == pytest.approx(1.0)
    assert teacher_agreement(-t, t)["pearson"] == pytest.approx(-1.0)


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


# ---------------------------------------------------------------- quick builds


@pytest.fixture(scope="session")
def quick_ae_build(tmp_path_factory: pytest.TempPathFactory):
    from fastml.pipeline import build

    out = tmp_path_factory.mktemp("anomaly_builds")
    # yosys off: minutes of synthesis estimate that this test does not look at (the benchmark runs it)
    cfg = load_config(CONFIGS / "anomaly_ae.yaml", overrides={"firmware": {"output_dir": str(out), "yosys": False}})
    return build(cfg, quick=True, progress=False, log=lambda _: None), cfg


@pytest.fixture(scope="session")
def quick_conv_build(tmp_path_factory: pytest.TempPathFactory):
    from fastml.pipeline import build

    out = tmp_path_factory.mktemp("anomaly_builds")
    cfg = load_config(CONFIGS / "calo_conv.yaml", overrides={"firmware": {"output_dir": str(out), "yosys": False}})
    return build(cfg, quick=True, progress=False, log=lambda _: None), cfg


def _check_anomaly_report(report, cfg) -> dict:
    assert report.status == "ok"
    assert {"emulator", "rtl_sim"} <= set(report.verification)  # every level the rtl backend runs
    for level in report.verification.values():
        assert level.mismatches == 0 and level.samples >= 1000
    task = report.task
    assert task["task"] == "anomaly_detection"
    signals = ("leptoquark", "h2_tautau", "zprime_ll")
    for level in ("quantized", "firmware", "quantized_test_split"):
        fig = task["levels"][level]
        assert set(fig["signals"]) == set(signals)
        for sig in fig["signals"].values():
            assert 0.0 <= sig["auc"] <= 1.0
            assert set(sig["efficiency"]) == {"1kHz", "10kHz"}
    # the firmware's figures are the quantised model's on the same (bit-exact) events
    assert task["levels"]["firmware"]["signals"] == task["levels"]["quantized"]["signals"]
    assert report.accuracy.firmware == pytest.approx(
        np.mean([s["auc"] for s in task["levels"]["firmware"]["signals"].values()]))
    saved = json.loads((cfg.project_dir / "report.json").read_text())
    assert saved["schema_version"] == 1 and saved["task"]["task"] == "anomaly_detection"
    assert "Signal efficiency at fixed trigger rate" in (cfg.project_dir / "report.md").read_text()
    return task


@pytest.mark.slow
def test_quick_autoencoder_build_is_bit_exact_and_reports_efficiency_at_rate(quick_ae_build) -> None:
    import keras

    report, cfg = quick_ae_build
    task = _check_anomaly_report(report, cfg)
    # the firmware is the encoder + score only: one output per event, no decoder layers
    model = keras.models.load_model(cfg.project_dir / "model" / "model.keras", compile=False)
    assert model.output_shape == (None, 1)
    assert not any(layer.name.startswith(("dec_", "reconstruction")) for layer in model.layers)
    x = np.load(cfg.project_dir / "model" / "verify_inputs.npz")
    assert x["y_ref"].shape == (len(x["x"]), 1) and np.all(x["y_ref"] >= 0)  # a sum of squares
    assert report.ebops is not None and report.ebops > 0
    assert task["levels"]["quantized_test_split"]["sm_events"] > task["levels"]["firmware"]["sm_events"]


@pytest.mark.slow
def test_quick_conv_student_build_is_bit_exact_and_reports_agreement(quick_conv_build) -> None:
    report, cfg = quick_conv_build
    task = _check_anomaly_report(report, cfg)
    agree = task["agreement"]["firmware"]
    assert -1.0 <= agree["spearman"] <= 1.0 and agree["events"] == report.verification["emulator"].samples
    assert task["agreement"]["quantized_test_split"]["spearman"] > 0  # the student learned something of the teacher
    assert set(task["teacher"]["signals"]) == {"leptoquark", "h2_tautau", "zprime_ll"}
    assert report.model["selection"]["teacher"]["model"] == "trained in this build"
    assert "_teacher_test" not in report.model["selection"]


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
