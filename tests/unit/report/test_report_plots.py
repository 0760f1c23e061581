"""fastml.report.plots: every plot has labelled axes and a title, and is written as a non-empty PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastml.report import plots


def _check_figure(fig, path: Path) -> None:
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel().strip(), f"{path.name}: an axis has no x label"
        assert ax.get_ylabel().strip(), f"{path.name}: an axis has no y label"
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(t.strip() for t in titles), f"{path.name}: no title"
    out = plots.save_figure(fig, path)
    assert out.is_file() and out.stat().st_size > 2000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_hgq_model():
    """A 16 -> 8 -> 5 HGQ2 network trained one epoch with a strong EBOPs penalty (some weights pruned)."""
    from fastml._internal.keras_backend import ensure_backend

    ensure_backend()
    import keras
    from hgq.utils import trace_minmax

    from fastml.models.mlp import build_mlp
    from fastml.recipe import MLPConfig

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    y = (x[:, :5] + 0.3 * rng.normal(size=(600, 5))).argmax(1)
    keras.utils.set_random_seed(0)
    model = build_mlp(MLPConfig(hidden=[8], beta0=1e-3), 16, 5)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    trace_minmax(model, x, batch_size=600)
    return model


def test_roc_curves_float_vs_firmware(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 500)
    good = np.eye(3)[labels] + rng.normal(scale=0.8, size=(500, 3))
    fig = plots.roc_curves(labels, {"float": good, "firmware": np.round(good * 4) / 4}, ("a", "b", "c"))
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "efficiency" in ax.get_xlabel() and "mistag" in ax.get_ylabel()
    assert len(ax.get_lines()) == 6  # 3 classes x (float, firmware)
    labels_text = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("a float (AUC") for t in labels_text)
    _check_figure(fig, tmp_path / "roc.png")


def test_roc_curves_binary_single_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 300)
    fig = plots.roc_curves(labels, {"firmware": labels + rng.normal(size=300)}, ("bkg", "sig"))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 1 and legend[0].startswith("sig firmware")
    _check_figure(fig, tmp_path / "roc_binary.png")


@pytest.mark.slow
def test_bitwidth_distribution_reads_hgq_per_weight_bits(tiny_hgq_model, tmp_path: Path) -> None:
    per_layer = plots.kernel_bits(tiny_hgq_model)
    assert list(per_layer) == ["dense_bn_0", "logits"]
    assert per_layer["dense_bn_0"]["bits"].shape == (16 * 8,)
    assert per_layer["logits"]["bits"].shape == (8 * 5,)
    layer = tiny_hgq_model.get_layer("logits")
    expected = np.asarray(layer.kq.bits_(tuple(layer.kernel.shape))).reshape(-1)
    np.testing.assert_array_equal(per_layer["logits"]["bits"], expected)
    # Per weight, not per layer: give the logits kernel's quantiser distinct bit widths and read them back.
    b_var = layer.kq.quantizer._b
    old_b = b_var.numpy()
    try:
        b_var.assign((np.arange(old_b.size) % 7).reshape(old_b.shape).astype(old_b.dtype))
        bits = plots.kernel_bits(tiny_hgq_model)["logits"]["bits"]
        assert len(np.unique(bits)) == 7
        counts = np.histogram(bits, bins=np.arange(-0.5, 9.5))[0]
        drawn = plots.bitwidth_distribution(tiny_hgq_model)
        heights = [p.get_height() for p in drawn.axes[1].patches]
        assert heights[1] == pytest.approx(bits.mean())  # the logits bar is the mean of the per-weight bits
        assert counts[:7].sum() == bits.size
        _check_figure(drawn, tmp_path / "bits_varied.png")
    finally:
        b_var.assign(old_b)
    fig = plots.bitwidth_distribution(tiny_hgq_model)
    hist_ax = fig.axes[0]
    assert "bit" in hist_ax.get_xlabel() and "weights" in hist_ax.get_ylabel()
    _check_figure(fig, tmp_path / "bits.png")


@pytest.mark.slow
def test_resource_breakdown_uses_layer_ebops(tiny_hgq_model, tmp_path: Path) -> None:
    ebops = plots.ebops_per_layer(tiny_hgq_model)
    assert set(ebops) == {"dense_bn_0", "logits"} and all(v > 0 for v in ebops.values())
    weights = plots.weights_per_layer(tiny_hgq_model)
    assert weights["dense_bn_0"][1] == 128 and 0 <= weights["dense_bn_0"][0] <= 128
    fig = plots.resource_breakdown(ebops, weights=weights)
    assert "EBOPs" in fig.axes[0].get_ylabel()
    assert "HGQ2" in fig.axes[0].get_title()  # the source is named on the plot
    _check_figure(fig, tmp_path / "resources.png")


def test_pareto_front_marks_dominated_points(tmp_path: Path) -> None:
    points = [{"accuracy": 0.70, "lut": 1000, "latency_ns": 20, "label": "b1"},
              {"accuracy": 0.74, "lut": 3000, "latency_ns": 30, "label": "b2"},
              {"accuracy": 0.72, "lut": 5000, "latency_ns": 35, "label": "b3"},  # dominated by b2
              {"accuracy": 0.76, "lut": 9000, "latency_ns": 40, "label": "b4"}]
    assert plots.pareto_optimal(points) == [0, 1, 3]
    fig = plots.pareto_front(points)
    ax = fig.axes[0]
    assert "LUT" in ax.get_xlabel() and "%" in ax.get_ylabel()
    assert any(a.get_label() == "<colorbar>" and "ns" in a.get_ylabel() for a in fig.axes)
    _check_figure(fig, tmp_path / "pareto.png")


def test_training_front_marks_chosen_point_and_float_twin(tmp_path: Path) -> None:
    selection = {"rule": "smallest_within_float", "max_accuracy_drop": 0.01, "float_val_accuracy": 0.69, "chosen": 2,
                 "pareto": [{"val_accuracy": 0.688, "ebops": 90_000, "epoch": 40},
                            {"val_accuracy": 0.684, "ebops": 20_000, "epoch": 200},
                            {"val_accuracy": 0.681, "ebops": 4_321, "epoch": 450},
                            {"val_accuracy": 0.650, "ebops": 1_200, "epoch": 590}]}
    fig = plots.training_front(selection, title="t")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "EBOPs" in ax.get_xlabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert "float twin 69.00%" in labels
    assert any(lab.startswith("smallest_within_float: float - 1") for lab in labels)
    threshold = next(line for line in ax.get_lines() if line.get_label().startswith("smallest_within_float"))
    assert threshold.get_ydata()[0] == pytest.approx(68.0)
    texts = [t.get_text() for t in ax.texts]
    assert any("epoch 450" in t and "4,321 EBOPs" in t for t in texts), texts
    _check_figure(fig, tmp_path / "front.png")
    # a rule without a float twin draws no float line
    fig = plots.training_front({**selection, "rule": "best_accuracy", "float_val_accuracy": None}, title="t")
    assert not any("float" in line.get_label() for line in fig.axes[0].get_lines())
