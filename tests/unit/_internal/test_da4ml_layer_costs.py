"""Where da4ml's cost goes: the per-layer rows of ``layer_costs`` add up to the traced logic's whole cost."""

from __future__ import annotations

from itertools import pairwise

import pytest

from fastml.backends import get_backend
from fastml.errors import FastmlError


@pytest.mark.slow
def test_layer_rows_add_up_to_the_traced_logic(tiny_rtl_trained) -> None:
    from fastml._internal.da4ml import layer_costs, trace_keras

    trained, _ = tiny_rtl_trained
    costs = layer_costs(trained.model, cutoff=5.0)
    comb = trace_keras(trained.model)
    rows = costs["rows"]
    names = [ly.name for ly in trained.model.layers]
    assert len(rows) >= 2 and [names.index(r["layer"]) for r in rows] == sorted(names.index(r["layer"]) for r in rows)
    assert all(r["lut"] > 0 and r["adders"] > 0 and r["bits_max"] >= r["bits_min"] > 0 for r in rows)
    assert costs["total_lut"] == pytest.approx(comb.cost, abs=0.1 * len(rows))  # every operation charged once
    assert rows[-1]["elements"] == 5 and rows[-1]["delay"] == pytest.approx(comb.latency[1])
    stages = [r["stages"] for r in rows]
    assert stages[0][0] == 0 and all(a[1] <= b[1] for a, b in pairwise(stages))
    assert "ff" in costs["not_run"]


def test_backends_without_per_layer_costs_say_why() -> None:
    why = get_backend("conifer").layer_costs(None, None, None)  # type: ignore[arg-type]
    assert why == {"not_run": "not run: backend 'conifer' gives no per-layer costs yet"}


def test_an_untraceable_model_raises_one_line() -> None:
    from fastml._internal.da4ml import layer_costs

    with pytest.raises(FastmlError, match="da4ml cannot trace"):
        layer_costs(object(), 5.0)
