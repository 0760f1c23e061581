"""Bring your own model, built: the committed recipes (saved HGQ2 model, float model to quantise, QKeras .h5,
QONNX) compiled and verified with zero mismatches; for QKeras and QONNX the verified outputs are the
source framework's own predictions bit for bit (golden files made by real QKeras 0.9.0 and QONNX,
tests/fixtures/qkeras/make_fixtures.py). The fast refusals and rebuild checks are in tests/unit/test_byo.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fastml.recipe import load_config

REPO = Path(__file__).resolve().parents[2]
QKERAS = REPO / "tests" / "fixtures" / "qkeras"
QONNX = REPO / "tests" / "fixtures" / "qonnx"


def _golden(name: str) -> tuple[np.ndarray, str]:
    with np.load(QKERAS / f"{name}_golden.npz") as g:
        return g["y"], str(g["x_sha256"])


def _build_file(recipe: Path, out: Path, name: str, quick: bool = False):
    """``fastml build <recipe>`` through the CLI into ``out``: the project folder and its report."""
    from fastml.cli import main
    from fastml.report import load_report

    args = ["build", str(recipe), "--output-dir", str(out), "--no-progress"]
    assert main([*args, "--quick"] if quick else args) == 0
    return out / name, load_report(out / name)


def _build(recipe: str, out: Path, quick: bool = False):
    return _build_file(REPO / "configs" / recipe, out, load_config(REPO / "configs" / recipe).name, quick)


def _build_without_yosys(recipe: str, model: Path, tmp_path: Path):
    """``_build`` of a copy of configs/<recipe> reading ``model`` with yosys off (it would take minutes)."""
    import yaml

    raw = yaml.safe_load((REPO / "configs" / recipe).read_text())
    raw["model"]["path"] = str(model)  # the copy is not beside the recipe's relative path
    raw["firmware"]["yosys"] = False
    (tmp_path / recipe).write_text(yaml.safe_dump(raw))
    return _build_file(tmp_path / recipe, tmp_path / "out", raw["name"])


@pytest.mark.slow
def test_qkeras_recipe_firmware_matches_qkeras_bit_for_bit(tmp_path: Path) -> None:
    project, report = _build("byo_qkeras_mlp.yaml", tmp_path)
    assert report.verification["csim"].mismatches == 0 and report.verification["csim"].samples == 10_000
    assert report.model["selection"]["train"].startswith("skipped")
    y_qkeras, _ = _golden("qkeras_mlp")
    with np.load(project / "model" / "verify_inputs.npz") as v:
        y_ref = v["y_ref"]  # what the C-simulation reproduced with 0 mismatches
    assert int(np.count_nonzero(y_ref != y_qkeras[: len(y_ref)])) == 0
    assert (project / "model" / "source_model.h5").is_file()


@pytest.mark.slow
def test_qkeras_folded_batchnorm_firmware_matches_qkeras_bit_for_bit(tmp_path: Path) -> None:
    """hls4ml C-simulation of the imported QConv2DBatchnorm model on 10 000 events: zero mismatches, and the
    outputs it reproduced are QKeras's own predictions."""
    import yaml

    from fastml.cli import main
    from fastml.report import load_report

    recipe = tmp_path / "byo_qkeras_conv_bn.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "byo_qkeras_conv_bn", "data": {"source": "builtin:jets_constituents", "n_particles": 8},
        "model": {"kind": "qkeras", "path": str(QKERAS / "qkeras_conv_bn.h5")},
        "firmware": {"backend": "hls4ml", "strategy": "latency", "yosys": False},
        "verify": {"samples": 10_000}, "budgets": {"max_mismatches": 0}}))
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    project = tmp_path / "out" / "byo_qkeras_conv_bn"
    report = load_report(project)
    assert report.verification["csim"].mismatches == 0 and report.verification["csim"].samples == 10_000
    y_qkeras, _ = _golden("qkeras_conv_bn")
    with np.load(project / "model" / "verify_inputs.npz") as v:
        assert int(np.count_nonzero(v["y_ref"] != y_qkeras[: len(v["y_ref"])])) == 0
    assert "RND_CONV" in report.checks["da4ml_estimate"]  # why da4ml has no estimate, in words


@pytest.mark.slow
def test_saved_hgq2_conv_recipe_builds_bit_exact(tmp_path: Path) -> None:
    project, report = _build("byo_hgq2_conv.yaml", tmp_path)
    assert report.verification["csim"].mismatches == 0 and report.verification["csim"].samples == 10_000
    assert report.model["selection"]["calibrated"] is False
    assert (project / "model" / "source_model.keras").is_file()


@pytest.mark.slow
def test_float_model_quantize_recipe_trains_and_builds_rtl_bit_exact(tmp_path: Path) -> None:
    """The shipped recipe on its full data and 10 000 verified events; only the training is cut to 3 epochs
    (``--quick`` would also cap the data, leaving fewer than 10 000 test events)."""
    import yaml

    from fastml.cli import main
    from fastml.report import load_report

    raw = yaml.safe_load((REPO / "configs" / "byo_float_quantize.yaml").read_text())
    raw["model"]["path"] = str(REPO / "configs" / raw["model"]["path"])
    raw["train"]["epochs"] = 3
    recipe = tmp_path / "byo_float_quantize.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    report = load_report(tmp_path / "out" / raw["name"])
    assert set(report.verification) == {"emulator", "rtl_sim"}
    assert all(v.mismatches == 0 and v.samples == 10_000 for v in report.verification.values())
    assert report.model["selection"]["source"] == "quantised from a float model"
    assert report.accuracy.float is not None and report.ebops is not None


@pytest.mark.slow
def test_qonnx_recipe_firmware_matches_qonnx_execution(tmp_path: Path) -> None:
    project, report = _build("byo_qonnx.yaml", tmp_path)
    assert report.verification["csim"].mismatches == 0 and report.verification["csim"].samples == 10_000
    assert report.verification["csim"].reference == "qonnx execute_onnx"
    with np.load(QONNX / "qonnx_mlp_golden.npz") as g, np.load(project / "model" / "verify_inputs.npz") as v:
        assert int(np.count_nonzero(v["y_ref"] != g["y"][: len(v["y_ref"])])) == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("alkaid") is None, reason="not run: alkaid is not installed")
def test_qkeras_to_verilog_through_alkaid_matches_qkeras_bit_for_bit(tmp_path: Path) -> None:
    """The QKeras tagger with backend rtl, compiler alkaid (configs/byo_qkeras_rtl.yaml, yosys off to save minutes):
    alkaid's emulator and verilator match the reference, and the reference is QKeras's own prediction."""
    project, report = _build_without_yosys("byo_qkeras_rtl.yaml", QKERAS / "qkeras_mlp.h5", tmp_path)
    for level in ("emulator", "rtl_sim"):
        assert report.verification[level].mismatches == 0 and report.verification[level].samples == 10_000
    assert report.resources["da4ml_estimate"].compiler.startswith("alkaid ")  # type: ignore[attr-defined]
    y_qkeras, _ = _golden("qkeras_mlp")
    with np.load(project / "model" / "verify_inputs.npz") as v:
        assert int(np.count_nonzero(v["y_ref"] != y_qkeras[: len(v["y_ref"])])) == 0


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("alkaid") is None or importlib.util.find_spec("qonnx") is None,
                    reason="not run: alkaid or qonnx is not installed")
def test_qonnx_to_verilog_through_alkaid_matches_qonnx_execution_bit_for_bit(tmp_path: Path) -> None:
    """The QONNX tagger with backend rtl, compiler alkaid (configs/byo_qonnx_rtl.yaml, yosys off to save minutes):
    alkaid's emulator and verilator match the reference on 10 000 events, and the reference is qonnx's own
    execute_onnx (the golden file of the hls4ml recipe's events). The compiler and its cost model are recorded."""
    project, report = _build_without_yosys("byo_qonnx_rtl.yaml", QONNX / "qonnx_mlp.onnx", tmp_path)
    assert report.status == "ok"
    assert set(report.verification) == {"emulator", "rtl_sim"}
    for level in ("emulator", "rtl_sim"):
        assert report.verification[level].mismatches == 0 and report.verification[level].samples == 10_000
        assert report.verification[level].reference == "qonnx execute_onnx"
    estimate = report.resources["da4ml_estimate"]
    assert estimate.compiler.startswith("alkaid ") and estimate.lut > 0  # type: ignore[attr-defined]
    with np.load(QONNX / "qonnx_mlp_golden.npz") as g, np.load(project / "model" / "verify_inputs.npz") as v:
        assert int(np.count_nonzero(v["y_ref"] != g["y"][: len(v["y_ref"])])) == 0
