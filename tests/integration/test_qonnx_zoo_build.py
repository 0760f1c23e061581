"""The QONNX model zoo's jet tagger (../shared/peer-models/qonnx_jettagging) built as published: legacy domain,
no Quant on its input, a final Softmax. fastml adds the input quantiser and drops the Softmax (recorded), and
hls4ml's C-simulation reproduces qonnx's execution of that graph bit for bit, on ties of the input grid too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from fastml.recipe import load_config

PEER = Path(__file__).resolve().parents[2] / ".." / "shared" / "peer-models"
JET = PEER / "qonnx_jettagging"


def _recipe(tmp_path: Path, samples: int) -> Path:
    """The corpus recipe with fewer verification events (the corpus file itself is left as published)."""
    recipe = yaml.safe_load((JET / "recipe.yaml").read_text())
    recipe["model"]["path"] = str(JET / recipe["model"]["path"])
    recipe["verify"]["samples"] = samples
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_qonnx_zoo_jet_tagger_builds_bit_exact_with_its_float_edges_recorded(tmp_path: Path) -> None:
    if not PEER.is_dir():
        pytest.skip("../shared/peer-models not present")
    from fastml.backends import convert
    from fastml.cli import main
    from fastml.data import load_data
    from fastml.models.float_edges import resolve_precision
    from fastml.pipeline import train
    from fastml.report import load_report

    recipe = _recipe(tmp_path, 1000)
    cfg = load_config(recipe)
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    report = load_report(tmp_path / "out" / cfg.name)
    csim = report.verification["csim"]
    assert csim.samples == 1000 and csim.mismatches == 0
    edges = {e["edge"]: e for e in report.model["selection"]["float_edges"]}
    assert set(edges) == {"input", "output activation"}
    assert edges["input"]["where"] == "MatMul_0" and edges["output activation"]["where"] == "Softmax_0"
    assert report.accuracy.float is not None and report.accuracy.firmware is not None  # the cost, reported

    # the input quantiser rounds half to even: values on a tie of its grid and one float32 step either side
    data = load_data(cfg.data, cfg.config_dir)
    chosen, _ = resolve_precision(cfg.model.input_precision, data.x_train, "model.input_precision")
    trained = train(cfg, data, progress=False)
    project = convert(trained, cfg, tmp_path / "ties")
    ticks = np.random.default_rng(1).integers(-2 ** (chosen.width - 2), 2 ** (chosen.width - 2), (300, 16))
    ties = ((ticks + 0.5) * chosen.step).astype(np.float32)
    x = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)), np.nextafter(ties, np.float32(-np.inf))])
    reference, firmware = trained.predict_quantized(x), project.simulators["csim"](x)
    assert int(np.count_nonzero(reference != firmware)) == 0
    # and the ties matter: a truncating or half-up input would change these outputs
    assert int(np.count_nonzero(reference[:300] != reference[300:600])) > 0
