"""A peer QKeras model with float edges (no input quantiser, a final softmax: hls4ml's QKERAS_3layer.h5) built
through hls4ml: zero mismatches against the model with exactly the added input quantiser, and every choice in
the report beside the published model's accuracy. The unit checks are in tests/unit/models/test_float_edges.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS = REPO / ".." / "shared" / "peer-models"


@pytest.mark.slow
def test_qkeras_3layer_with_float_edges_builds_bit_exact_and_reports_them(tmp_path: Path) -> None:
    import yaml

    from fastml.cli import main
    from fastml.report import load_report

    model = PEERS / "qkeras_3layer" / "QKERAS_3layer.h5"
    if not model.is_file():
        pytest.skip("../shared/peer-models not present")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "peer_qkeras_3layer_edges", "data": {"source": "builtin:jets_hlf"},
        "model": {"kind": "qkeras", "path": str(model.resolve())},
        "firmware": {"backend": "hls4ml", "strategy": "latency"},
        "verify": {"samples": 1000}, "budgets": {"max_mismatches": 0}}))
    assert main(["build", str(recipe), "--output-dir", str(tmp_path / "out"), "--no-progress"]) == 0
    report = load_report(tmp_path / "out" / "peer_qkeras_3layer_edges")
    assert report.verification["csim"].mismatches == 0 and report.verification["csim"].samples >= 1000
    edges = report.model["selection"]["float_edges"]
    assert [(e["where"], e["edge"]) for e in edges] == [("input_1", "input"), ("softmax", "output activation")]
    assert edges[0]["choice"].startswith("input quantiser ap_fixed<") and "auto: training range" in edges[0]["choice"]
    # the published (float-input) model's accuracy next to the as-built one: the cost of the choices
    assert report.accuracy.float is not None and report.accuracy.quantized == report.accuracy.firmware
