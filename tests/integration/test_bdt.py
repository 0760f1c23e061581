"""BDTs through conifer: training/loading, zero mismatches per backend, xgboost's split convention."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fastml.backends import FirmwareProject
from fastml.data import Dataset, Scaler
from fastml.errors import ConfigError
from fastml.models.bdt import train_bdt
from fastml.recipe import parse_config
from fastml.verification import bit_exact_mismatches, verify_project

#: LSB 1/8 data: xgboost's thresholds land on the grid, so events sit exactly on thresholds.
GRID = 8


def _dataset(n_classes: int, seed: int) -> Dataset:
    from sklearn.datasets import make_classification

    x, y = make_classification(3000, 6, n_informative=4, n_redundant=0, n_classes=n_classes, random_state=seed)
    x = np.clip(np.round(x * GRID) / GRID, -6, 6 - 1 / GRID).astype(np.float32)
    names = tuple(f"x{i}" for i in range(6))
    return Dataset(x[:1800], y[:1800], x[1800:2400], y[1800:2400], x[2400:], y[2400:], names,
                   tuple(f"c{i}" for i in range(n_classes)), Scaler(np.zeros(6), np.ones(6)))


def _cfg(tmp: Path, **sections: Any) -> Any:
    doc: dict[str, Any] = {"name": "bdt_test", "model": {"kind": "bdt", "bdt": {"n_estimators": 6, "max_depth": 3}},
                           "firmware": {"backend": "conifer", "output_dir": str(tmp)}, "verify": {"samples": 600}}
    for key, value in sections.items():
        doc[key] = {**doc.get(key, {}), **value}
    return parse_config(doc, tmp / "bdt.yaml")


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bdt")


@pytest.fixture(scope="module")
def data3() -> Dataset:
    return _dataset(3, seed=1)


@pytest.fixture(scope="module")
def xgb3(tmp: Path, data3: Dataset) -> Any:
    return train_bdt(_cfg(tmp), data3)


@pytest.fixture(scope="module")
def xgb_projects(tmp: Path, xgb3: Any) -> dict[str, FirmwareProject]:
    """The 3-class xgboost ensemble compiled by conifer's xilinxhls and cpp emulations at ap_fixed<12,4>."""
    from fastml.backends.conifer.convert import convert

    out = {}
    for backend in ("xilinxhls", "cpp"):
        cfg = _cfg(tmp, firmware={"conifer_backend": backend, "precision": "ap_fixed<12,4>"})
        out[backend] = convert(xgb3, cfg, tmp / backend)
    return out


def _on_threshold_events(trained: Any, n: int = 300) -> np.ndarray:
    """Events whose split feature equals a threshold of the ensemble, other features random on the grid."""
    rng = np.random.default_rng(0)
    nodes = [(f, t) for r in trained.ensemble["trees"] for tree in r
             for f, t in zip(tree["feature"], tree["threshold"], strict=True) if f >= 0]
    x = np.round(rng.normal(size=(n, 6)) * GRID) / GRID
    for i in range(n):
        f, t = nodes[i % len(nodes)]
        x[i, f] = t
    return x.astype(np.float32)


def test_train_bdt_margins_and_ensemble(xgb3: Any, data3: Dataset) -> None:
    from fastml.backends.conifer.reference import FixedPointEnsemble

    margins = xgb3.predict_float(data3.x_test)
    assert margins.shape == (len(data3.x_test), 3) and xgb3.kind == "bdt" and xgb3.n_classes == 3
    assert xgb3.ensemble["splitting_convention"] == "<" and len(xgb3.ensemble["trees"]) == 6
    np.testing.assert_allclose(FixedPointEnsemble(xgb3.ensemble).float_decision_function(data3.x_test), margins,
                               rtol=1e-5, atol=1e-5)
    json.dumps(xgb3.selection)  # goes into the report


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["xilinxhls", "cpp"])
def test_emulation_matches_reference_exactly(xgb_projects: dict[str, FirmwareProject], xgb3: Any,
                                             data3: Dataset, backend: str) -> None:
    project = xgb_projects[backend]
    rng = np.random.default_rng(2)
    # held-out events, events on thresholds, off-grid values, and values beyond ap_fixed<12,4>'s range (wrap)
    x = np.concatenate([data3.x_test, _on_threshold_events(xgb3), rng.normal(scale=3, size=(300, 6)),
                        rng.uniform(-20, 20, size=(100, 6))]).astype(np.float32)
    ref, fw = project.reference(x), project.simulators["csim"](x)
    assert ref.shape == fw.shape == (len(x), 3)
    assert bit_exact_mismatches(ref, fw) == (0, None)
    assert project.reference_name == "fixed-point reference" and (project.path / "bdt_test.json").is_file()
    assert project.info["precision"] == {"input": "ap_fixed<12,4>", "threshold": "ap_fixed<12,4>",
                                         "score": "ap_fixed<12,4>"}
    agree = project.info["float_agreement"]
    assert 0 <= agree["decision_flip_fraction"] <= 1 and agree["max_abs_score_diff"] >= agree["mean_abs_score_diff"]
    json.dumps(project.info)
    if backend == "xilinxhls":
        assert project.latency is not None and project.latency.source == "conifer_estimate" and project.latency.cycles
        assert project.resources["conifer_estimate"].lut


@pytest.mark.slow
def test_xgboost_split_convention_on_thresholds(xgb_projects: dict[str, FirmwareProject], xgb3: Any) -> None:
    """Values exactly on a threshold go right (xgboost: ``x < t`` is left), in the reference and the firmware."""
    import xgboost as xgb

    from fastml.backends.conifer.reference import APFixed, FixedPointEnsemble

    x = _on_threshold_events(xgb3)
    t = APFixed(12, 4)
    xgb_leaves = xgb3.model.predict(xgb.DMatrix(x), pred_leaf=True).astype(np.int64)
    ref = FixedPointEnsemble(xgb3.ensemble)
    assert np.array_equal(ref.leaves(x, t, t), xgb_leaves)
    # the same events with '<=' take other branches: the events really sit on thresholds
    flipped = FixedPointEnsemble({**xgb3.ensemble, "splitting_convention": "<="})
    assert (flipped.leaves(x, t, t) != xgb_leaves).any(axis=1).mean() > 0.5
    # firmware: on-grid thresholds and leaves at 8 fractional bits -> scores equal the float margin to one LSB per tree
    for project in xgb_projects.values():
        fw = project.simulators["csim"](x)
        assert bit_exact_mismatches(project.reference(x), fw)[0] == 0
        n_trees = len(xgb3.ensemble["trees"]) + 1
        assert np.abs(fw - xgb3.predict_float(x)).max() <= n_trees * 2.0**-8


@pytest.mark.slow
def test_sklearn_binary_auto_precision(tmp: Path) -> None:
    """scikit-learn GradientBoosting ('<=' convention), two classes (one output), precision search, HLS emulation."""
    from fastml.backends.conifer.convert import convert

    data = _dataset(2, seed=3)
    cfg = _cfg(tmp, model={"bdt": {"library": "sklearn", "n_estimators": 5, "max_depth": 2}},
               budgets={"max_accuracy_drop": 0.02})
    trained = train_bdt(cfg, data)
    assert trained.ensemble["splitting_convention"] == "<=" and trained.predict_float(data.x_test).shape == (600, 1)
    project = convert(trained, cfg, tmp / "sk")
    x = np.concatenate([data.x_test, data.x_test + 1 / 64, _on_threshold_events(trained)])
    assert bit_exact_mismatches(project.reference(x), project.simulators["csim"](x)) == (0, None)
    search = project.info["precision_search"]
    assert search["allowed_loss"] == 0.02 and search["chosen"] == project.info["precision"]
    assert search["target_met"] and search["rows"][-1]["loss"] <= 0.02


def test_pickle_refused_unless_trusted(tmp: Path, data3: Dataset) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    model = GradientBoostingClassifier(n_estimators=2, max_depth=2).fit(data3.x_train, data3.y_train)
    (tmp / "gb.pkl").write_bytes(pickle.dumps(model))
    with pytest.raises(ConfigError) as err:
        train_bdt(_cfg(tmp, model={"bdt": {"load": "gb.pkl"}}), data3)
    msg = str(err.value)
    assert "model.load" in msg and "trust_pickle" in msg and "\n" not in msg
    trusted = train_bdt(_cfg(tmp, model={"bdt": {"load": "gb.pkl", "trust_pickle": True}}), data3)
    assert trusted.library == "sklearn" and trusted.selection["source"] == "loaded"


def test_load_xgboost_json(tmp: Path, xgb3: Any, data3: Dataset) -> None:
    xgb3.model.save_model(tmp / "model.json")
    loaded = train_bdt(_cfg(tmp, model={"bdt": {"load": "model.json"}}), data3)
    np.testing.assert_array_equal(loaded.predict_float(data3.x_val), xgb3.predict_float(data3.x_val))
    assert loaded.ensemble["trees"] == xgb3.ensemble["trees"]
    (tmp / "junk.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"model\.load"):
        train_bdt(_cfg(tmp, model={"bdt": {"load": "junk.json"}}), data3)


@pytest.mark.slow
def test_vhdl_project_written_and_rtl_sim_reported(tmp: Path, xgb3: Any, data3: Dataset) -> None:
    """VHDL: sources written, conifer's latency formula used; without a VHDL simulator rtl_sim says 'not run'."""
    import shutil

    from fastml.backends.conifer.convert import convert

    cfg = _cfg(tmp, firmware={"conifer_backend": "vhdl"})
    project = convert(xgb3, cfg, tmp / "vhdl")
    assert (project.path / "firmware").is_dir() and any((project.path / "firmware").glob("*.vhd"))
    p = project.info["precision"]
    assert p["input"] == p["threshold"] == p["score"]  # conifer's VHDL backend needs one type
    assert project.latency is not None and project.latency.cycles == 2 + 3 + 3  # 2 + depth + ceil(log2 6 rounds)
    if not any(shutil.which(s) for s in ("xsim", "ghdl", "vsim")):
        assert project.simulators == {} and "rtl_sim" in project.info["not_run"]
    else:  # a VHDL simulator is installed: the VHDL itself must match the fixed-point reference
        x = data3.x_test[:200]
        levels, _ = verify_project(project, x)
        assert levels["rtl_sim"].samples == 200 and levels["rtl_sim"].mismatches == 0


@pytest.mark.slow
def test_conifer_vhdl_yosys_counts(tmp: Path, xgb3: Any) -> None:
    """A real ghdl synth + yosys run on conifer's VHDL gives LUT/FF counts (skipped only without the tools)."""
    import shutil

    from fastml.backends.conifer.convert import convert
    from fastml.backends.conifer.estimate import conifer_vhdl_yosys_resources

    if not (shutil.which("ghdl") and shutil.which("yosys")):
        pytest.skip("ghdl and yosys are installed by scripts/bootstrap.sh when run as root")
    project = convert(xgb3, _cfg(tmp, firmware={"conifer_backend": "vhdl"}), tmp / "vhdl_yosys")
    res = conifer_vhdl_yosys_resources(project.path, "xcvu13p-flga2577-2-e", log_path=tmp / "yosys.log")
    assert res.lut is not None and res.lut > 10 and res.ff is not None and res.ff > 0
    assert res.dsp == 0 and "ghdl" in (res.model_extra or {})["note"]
