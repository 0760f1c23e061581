"""Plots a person would rather look at than read: ROC curves, HGQ2 bit widths, resources by layer, Pareto fronts.

Every plotting function returns a matplotlib ``Figure`` (Agg backend, never a window) with labelled
axes, units and a title; ``save_figure`` writes it as PNG. ``save_build_plots(project_dir)`` reads a
built project and writes its PNGs into ``project_dir/plots/`` (what ``fastml build --plots`` runs).

Sources are labelled honestly: per-layer resources are HGQ2's EBOPs (effective bit operations, the
quantity the regulariser minimises and a proxy for LUTs with distributed arithmetic), not synthesis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # no display, ever: plots are files

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .._internal.keras_backend import ensure_backend
from . import load_report

if TYPE_CHECKING:
    from . import Report

#: Line style per kind of scores in ROC plots (colour is per class).
_STYLES = {"float": "-", "quantized": ":", "firmware": "--"}


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` (folders created) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------- ROC


def _one_vs_rest(scores: np.ndarray, labels: np.ndarray, n_classes: int) -> list[tuple[int, np.ndarray]]:
    """(class index, score for that class) pairs; a single-column score is class 1 of a binary problem."""
    scores = np.asarray(scores, np.float64).reshape(len(labels), -1)
    if scores.shape[1] == 1:
        return [(1 if n_classes > 1 else 0, scores[:, 0])]
    return [(i, scores[:, i]) for i in range(scores.shape[1])]


def roc_curves(labels: np.ndarray, scores: Mapping[str, np.ndarray], class_names: Sequence[str],
               title: str = "ROC curves, one class vs the rest") -> Figure:
    """One-vs-rest ROC curve per class, for each set of ``scores`` (e.g. ``{"float": .., "firmware": ..}``).

    x is the signal efficiency (true-positive rate), y the mistag rate (false-positive rate) on a log
    scale, as in jet-tagging papers. Colour is the class, line style the kind of scores; the legend
    gives each curve's AUC. Classes absent from ``labels`` (or always present) are skipped.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab10")
    n_drawn = 0
    for which, s in scores.items():
        style = _STYLES.get(which, "-.")
        for cls, score in _one_vs_rest(s, labels, len(class_names)):
            positive = labels == cls
            if positive.all() or not positive.any():
                continue
            fpr, tpr, _ = roc_curve(positive, score)
            keep = fpr > 0  # log axis: the (0, 0) corner cannot be drawn
            auc = roc_auc_score(positive, score)
            ax.plot(tpr[keep], fpr[keep], style, color=colours(cls % 10), lw=1.6,
                    label=f"{class_names[cls]} {which} (AUC {auc:.3f})")
            n_drawn += 1
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel("signal efficiency (true-positive rate, fraction)")
    ax.set_ylabel("mistag rate (false-positive rate, fraction, log scale)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if n_drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="class, scores (AUC)",
                  title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no class has both signal and background events", ha="center", transform=ax.transAxes)
    return fig


# ------------------------------------------------------------------------------------------- bit widths


def kernel_bits(keras_model: Any) -> dict[str, dict[str, np.ndarray]]:
    """Per-weight bit widths of every HGQ2 layer's kernel quantiser: ``{layer: {"bits", "qkernel"}}``.

    ``bits`` is the quantiser's bit width for each kernel element (sign included, as HGQ2 counts it);
    ``qkernel`` the quantised kernel values (a weight quantised to 0 costs no hardware). Layers without
    a kernel quantiser (input, activation ...) are left out.
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in keras_model.layers:
        kq = getattr(layer, "kq", None)
        kernel = getattr(layer, "kernel", None)
        if kq is None or kernel is None:
            continue
        bits = np.asarray(kq.bits_(tuple(kernel.shape)), np.float64).reshape(-1)
        qkernel = np.asarray(getattr(layer, "qkernel", kernel), np.float64).reshape(-1)
        out[layer.name] = {"bits": bits, "qkernel": qkernel}
    return out


def bitwidth_distribution(keras_model: Any, title: str = "HGQ2 per-weight bit widths") -> Figure:
    """Histogram of the per-weight kernel bit widths of each HGQ2 layer, and the mean/pruned share per layer.

    Left: fraction of each layer's weights per bit width, one step histogram per layer. Right: mean bit width per
    layer, annotated with the share of weights that quantise to zero (pruned: no adder in firmware).
    """
    per_layer = kernel_bits(keras_model)
    fig, (ax_hist, ax_mean) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    if not per_layer:
        for ax in (ax_hist, ax_mean):
            ax.text(0.5, 0.5, "no HGQ2 kernel quantisers in this model", ha="center", transform=ax.transAxes)
    top = max((int(np.ceil(d["bits"].max())) for d in per_layer.values()), default=1)
    edges = np.arange(-0.5, top + 1.5, 1.0)
    names = list(per_layer)
    for name in names:
        bits = per_layer[name]["bits"]
        ax_hist.hist(bits, bins=edges, weights=np.full(bits.size, 1 / bits.size), histtype="step", lw=1.8,
                     label=f"{name} ({bits.size} weights)")
    ax_hist.set_xlabel("kernel weight bit width (bits, sign included)")
    ax_hist.set_ylabel("fraction of the layer's weights")
    ax_hist.set_title("bit-width histogram per layer")
    ax_hist.set_xticks(range(0, top + 1, max(1, (top + 1) // 12)))
    if names:
        ax_hist.legend(fontsize=8)
    means = [float(per_layer[n]["bits"].mean()) for n in names]
    pruned = [float(np.mean(per_layer[n]["qkernel"] == 0)) for n in names]
    bars = ax_mean.bar(range(len(names)), means, color="tab:blue")
    for bar, share, name in zip(bars, pruned, names, strict=True):
        ax_mean.annotate(f"{100 * share:.0f}% zero\n{per_layer[name]['bits'].size} w",
                         (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                         ha="center", va="bottom", fontsize=7)
    ax_mean.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax_mean.set_ylabel("mean kernel bit width (bits)")
    ax_mean.set_xlabel("layer")
    ax_mean.set_title("mean bits; share of weights quantised to 0")
    ax_mean.set_ylim(0, max(means, default=1) * 1.3 + 0.5)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------- resources by layer


def ebops_per_layer(keras_model: Any) -> dict[str, float]:
    """HGQ2's EBOPs of each layer that counts them (as last measured, e.g. by ``trace_minmax``)."""
    out: dict[str, float] = {}
    for layer in keras_model.layers:
        if getattr(layer, "enable_ebops", False) and getattr(layer, "_ebops", None) is not None:
            out[layer.name] = float(np.asarray(layer.ebops))
    return out


def weights_per_layer(keras_model: Any) -> dict[str, tuple[int, int]]:
    """(non-zero quantised weights, all weights) of each HGQ2 layer's kernel."""
    return {name: (int(np.count_nonzero(d["qkernel"])), int(d["qkernel"].size))
            for name, d in kernel_bits(keras_model).items()}


def resource_breakdown(per_layer: Mapping[str, float], quantity: str = "EBOPs",
                       source: str = "HGQ2 layer.ebops: effective bit operations, a LUT proxy, not synthesis",
                       weights: Mapping[str, tuple[int, int]] | None = None,
                       totals: Mapping[str, Any] | None = None, title: str = "resources by layer") -> Figure:
    """Bar chart of a per-layer resource figure (default: HGQ2 EBOPs), labelled with its source.

    ``weights`` ({layer: (non-zero, total)}) adds a second panel with the weights each layer keeps;
    ``totals`` ({source: Resources}) from the report are quoted in the title for scale (whole model).
    """
    names = list(per_layer)
    values = [float(per_layer[n]) for n in names]
    ncols = 2 if weights else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols + 1, 4.5), squeeze=False)
    ax = axes[0, 0]
    bars = ax.bar(range(len(names)), values, color="tab:orange")
    total = sum(values)
    for bar, v in zip(bars, values, strict=True):
        share = f" ({100 * v / total:.0f}%)" if total > 0 else ""
        ax.annotate(f"{v:,.0f}{share}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel(f"{quantity} per layer")
    ax.set_title(f"{quantity} (total {total:,.0f})\nsource: {source}", fontsize=9)
    ax.set_ylim(0, max(values, default=1) * 1.15 + 1)
    if weights:
        axw = axes[0, 1]
        wn = list(weights)
        nz = [weights[n][0] for n in wn]
        tot = [weights[n][1] for n in wn]
        axw.bar(range(len(wn)), tot, color="lightgrey", label="all weights")
        axw.bar(range(len(wn)), nz, color="tab:green", label="non-zero after quantisation")
        axw.set_xticks(range(len(wn)), wn, rotation=30, ha="right", fontsize=8)
        axw.set_xlabel("layer")
        axw.set_ylabel("number of kernel weights")
        axw.set_title("kernel weights kept per layer", fontsize=9)
        axw.legend(fontsize=8)
    heading = title
    if totals:
        parts = [f"{src}: {getattr(r, 'lut', None) if not isinstance(r, Mapping) else r.get('lut')} LUT"
                 for src, r in totals.items()]
        heading += "   [whole model " + "; ".join(parts) + "]"
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- Pareto


def pareto_optimal(points: Sequence[Mapping[str, Any]], x_key: str = "lut", y_key: str = "accuracy") -> list[int]:
    """Indices of the points no other point beats (lower ``x_key`` and higher ``y_key``), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][x_key], -points[i][y_key]))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if points[i][y_key] > best:
            front.append(i)
            best = points[i][y_key]
    return front


def pareto_front(points: Sequence[Mapping[str, Any]], x_key: str = "lut",
                 x_label: str = "estimated LUTs (da4ml_estimate)", colour_key: str | None = "latency_ns",
                 colour_label: str = "latency (ns)", title: str = "accuracy vs resources",
                 highlight: int | None = None, y_label: str = "accuracy (%)") -> Figure:
    """Accuracy (y, %) against a resource figure (x) for each point, the Pareto front drawn as a step line.

    Each point is a mapping with ``accuracy`` (fraction), ``x_key`` and optionally ``label`` and
    ``colour_key`` (shown as colour, with a colour bar). ``highlight`` circles one point (e.g. the
    checkpoint a build kept).
    """
    fig, ax = plt.subplots(figsize=(7, 5))
    if not points:
        ax.text(0.5, 0.5, "no points", ha="center", transform=ax.transAxes)
    xs = np.array([float(p[x_key]) for p in points])
    ys = np.array([100 * float(p["accuracy"]) for p in points])
    colours = [p.get(colour_key) for p in points] if colour_key else []
    if colour_key and points and all(c is not None for c in colours):
        sc = ax.scatter(xs, ys, c=np.asarray(colours, np.float64), cmap="viridis", s=60, zorder=3, edgecolor="k")
        fig.colorbar(sc, ax=ax, label=colour_label)
    else:
        ax.scatter(xs, ys, s=60, zorder=3, color="tab:blue", edgecolor="k")
    if points:
        front = pareto_optimal(points, x_key)
        ax.step(xs[front], ys[front], where="post", color="tab:red", lw=1.5, label="Pareto front", zorder=2)
        ax.legend(fontsize=8, loc="lower right")
    for i, p in enumerate(points):
        if p.get("label"):
            ax.annotate(str(p["label"]), (xs[i], ys[i]), textcoords="offset points", xytext=(5, 5), fontsize=7)
    if highlight is not None and 0 <= highlight < len(points):
        ax.scatter([xs[highlight]], [ys[highlight]], s=250, facecolors="none", edgecolors="tab:red", lw=2,
                   zorder=4, label="kept")
        ax.legend(fontsize=8, loc="lower right")
    ax.margins(x=0.1, y=0.1)  # room for the point labels
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return fig


def training_front(selection: Mapping[str, Any], title: str = "training checkpoints") -> Figure:
    """The accuracy-vs-EBOPs front one training kept (``report.model.selection``), EBOPs on a log axis.

    Each Pareto checkpoint is a point (validation accuracy, EBOPs as measured during training); the
    chosen one is circled and labelled with its epoch and EBOPs. Horizontal lines: the float twin's
    validation accuracy (``float_val_accuracy``) where one was trained, and the threshold the rule
    compared with (float or best accuracy minus ``max_accuracy_drop``) for the ``smallest_within`` rules.
    """
    records = list(selection.get("pareto") or [])
    points = [{"accuracy": r["val_accuracy"], "ebops": r["ebops"]} for r in records]
    chosen = selection.get("chosen")
    fig = pareto_front(points, x_key="ebops", x_label="EBOPs (HGQ2 effective bit operations, log scale)",
                       colour_key=None, title=title, highlight=chosen, y_label="validation accuracy (%)")
    ax = fig.axes[0]
    if points:
        ax.set_xscale("log")
    float_acc = selection.get("float_val_accuracy")
    if float_acc is not None:
        ax.axhline(100 * float_acc, color="tab:green", ls="--", lw=1.2,
                   label=f"float twin {100 * float_acc:.2f}%")
    rule, drop = selection.get("rule"), selection.get("max_accuracy_drop")
    reference = float_acc if rule == "smallest_within_float" else (
        max((p["accuracy"] for p in points), default=None) if rule == "smallest_within" else None)
    if reference is not None and drop is not None:
        ax.axhline(100 * (reference - drop), color="tab:gray", ls=":", lw=1.2,
                   label=f"{rule}: {'float' if rule == 'smallest_within_float' else 'best'} "
                         f"- {100 * drop:.2g} points")
    if chosen is not None and 0 <= chosen < len(records):
        r = records[chosen]
        ax.annotate(f"kept: epoch {r.get('epoch', '?')}\n{r['ebops']:,.0f} EBOPs, {100 * r['val_accuracy']:.2f}%",
                    (r["ebops"], 100 * r["val_accuracy"]), textcoords="offset points", xytext=(10, 8), fontsize=8,
                    color="tab:red")
    if points:
        ax.legend(fontsize=8, loc="best")
    return fig


# ------------------------------------------------------------------------------------- a built project


def _firmware_label(report: Report) -> str:
    if report.verification and all(v.mismatches == 0 for v in report.verification.values()):
        return "firmware"
    return "quantized"  # the saved outputs are the reference; firmware differs from it somewhere


def save_build_plots(project_dir: str | Path, log: Callable[[str], None] = print) -> list[Path]:
    """Write the plots of a built project into ``project_dir/plots/``; returns the PNGs written.

    - ``roc.png``: firmware ROC curves on the verification events from the test split (the saved
      reference outputs, which are the firmware's when every verification level had 0 mismatches),
      plus the float model's if ``model/float_model.keras`` exists;
    - ``bitwidths.png``, ``resources_by_layer.png`` (HGQ2 EBOPs per layer): for neural networks;
    - ``training_pareto.png``: validation accuracy vs EBOPs of the training checkpoints kept on the
      Pareto front, the chosen one circled, the float twin's validation accuracy as a line (``training_front``).

    A plot whose inputs are missing is skipped with a logged reason, never drawn from invented data.
    """

    project_dir = Path(project_dir)
    report = load_report(project_dir)
    out_dir = project_dir / "plots"
    written: list[Path] = []
    npz_path = project_dir / "model" / "verify_inputs.npz"
    keras_path = project_dir / "model" / "model.keras"
    model = None
    if keras_path.is_file():

        ensure_backend()
        import hgq  # noqa: F401  # registers HGQ2's layers with Keras for loading
        import keras

        model = keras.models.load_model(keras_path, compile=False)
    if npz_path.is_file():
        saved = np.load(npz_path)
        x_verify, y_ref = saved["x"], saved["y_ref"]
        if "labels" not in saved.files:
            log(f"plots: ROC skipped: {npz_path} holds no labels (built by an older fastml)")
        else:
            labels = saved["labels"]
            n = len(labels)
            scores: dict[str, np.ndarray] = {}
            float_path = project_dir / "model" / "float_model.keras"
            if float_path.is_file():
                import keras

                fm = keras.models.load_model(float_path, compile=False)
                scores["float"] = np.asarray(fm.predict(x_verify[:n], verbose=0))
            scores[_firmware_label(report)] = y_ref[:n]
            classes = report.data.get("classes") or [str(i) for i in range(max(2, y_ref.shape[-1]))]
            fig = roc_curves(labels, scores, classes,
                             title=f"{report.name}: ROC on {n} test events ({report.backend})")
            written.append(save_figure(fig, out_dir / "roc.png"))
    else:
        log(f"plots: ROC skipped: {npz_path} not found")
    if model is not None:
        written.append(save_figure(bitwidth_distribution(model, title=f"{report.name}: HGQ2 per-weight bit widths"),
                                   out_dir / "bitwidths.png"))
        per_layer = ebops_per_layer(model)
        if per_layer:
            fig = resource_breakdown(per_layer, weights=weights_per_layer(model), totals=report.resources,
                                     title=f"{report.name}: resources by layer")
            written.append(save_figure(fig, out_dir / "resources_by_layer.png"))
        else:
            log("plots: resources by layer skipped: the model's layers carry no EBOPs")
    selection = report.model.get("selection") or {}
    if selection.get("pareto"):
        fig = training_front(selection, title=f"{report.name}: training checkpoints (validation accuracy vs EBOPs)")
        written.append(save_figure(fig, out_dir / "training_pareto.png"))
    (out_dir).mkdir(parents=True, exist_ok=True)
    (out_dir / "plots.json").write_text(json.dumps({"plots": [p.name for p in written]}, indent=1) + "\n")
    return written


__all__ = ["bitwidth_distribution", "ebops_per_layer", "kernel_bits", "pareto_front", "pareto_optimal",
           "resource_breakdown", "roc_curves", "save_build_plots", "save_figure", "training_front",
           "weights_per_layer"]
