"""Firmware quality on the 5-class jet data for a sweep of EBOPs-regulariser strengths (beta).

For each beta the jet tagger is trained with a constant beta (``train.beta.start = end = beta``), its
test accuracy measured on the quantised model, then it is built as da4ml RTL at 200 MHz
(``fastml.backends.rtl_backend``) for the da4ml cost-model figures (LUT, FF, latency in cycles) and
synthesised with ``yosys synth_xilinx`` for cell counts (LUT, FF, DSP). These are *estimates* on
fastml's shipped Pythia 8 sample; the published rows are Vivado post-place-and-route numbers on the
detector-level OpenML 42468 data set, so they are context, not a like-for-like comparison.
"""

from __future__ import annotations

import time
from typing import Any

from .core import REPO_ROOT, Context, Row, not_run

JET_CONFIG = REPO_ROOT / "configs" / "jet_tagger.yaml"

#: (betas, hidden widths, epochs, max training events) for quick and full runs.
QUICK_SWEEP: dict[str, Any] = {"betas": [1e-5, 1e-4], "hidden": [16], "epochs": 3, "max_samples": 15_000}
FULL_SWEEP: dict[str, Any] = {"betas": [3e-6, 3e-5, 3e-4], "hidden": [64, 32, 32], "epochs": 30,
                              "max_samples": None}

#: Where the published state of the art for this task is, and what could be read of it. The figures
#: are copied only when the table could be read: the stored sources this benchmark was written from
#: held the papers' abstracts but not their result tables, so no number is filled in (none invented).
PUBLISHED: list[dict[str, Any]] = [
    {"source": "HGQ, Sun et al., arXiv:2405.00645, results table for the jet-tagging (JSC, 16 HLF) task",
     "figures": None,
     "why": "published figures not retrieved: the table text was not available to the author of this benchmark; "
            "read it from the paper and add it to benchmarks/firmware_quality.py PUBLISHED"},
    {"source": "da4ml, Sun et al., arXiv:2507.04535, jet-tagging (HLF) MLP results table",
     "figures": None,
     "why": "published figures not retrieved: the table text was not available to the author of this benchmark; "
            "read it from the paper and add it to benchmarks/firmware_quality.py PUBLISHED"},
]
PUBLISHED_NOTE = ("published: Vivado place-and-route on OpenML 42468 (detector-level, hls4ml_lhc_jets_hlf); "
                  "ours: da4ml cost model / yosys synth_xilinx estimates on the shipped Pythia 8 sample")


def _point(ctx: Context, beta: float, sweep: dict[str, Any], data: Any) -> Row:
    from fastml.backends import rtl_backend
    from fastml.config import load_config
    from fastml.errors import ToolError
    from fastml.estimate import rtl_yosys_resources
    from fastml.training import train
    from fastml.verification import accuracy

    cfg = load_config(JET_CONFIG, {
        "name": f"sweep_beta_{beta:.0e}".replace("-", "m").replace("+", "").replace(".", "p"),
        "model": {"mlp": {"hidden": sweep["hidden"]}},
        "train": {"beta": {"start": beta, "end": beta}, "float_baseline": False, "epochs": sweep["epochs"]},
        "firmware": {"backend": "rtl", "clock_period_ns": 5.0, "output_dir": str(ctx.workdir)},
        "verify": {"rtl_sim": False},
    })
    t0 = time.perf_counter()
    trained = train(cfg, data, progress=False)
    train_s = time.perf_counter() - t0
    acc = accuracy(trained.predict_quantized(data.x_test), data.y_test)
    t0 = time.perf_counter()
    proj = rtl_backend.convert(trained, cfg, ctx.workdir / cfg.name)
    convert_s = time.perf_counter() - t0
    da4ml = proj.resources["da4ml_estimate"]
    values: dict[str, Any] = {
        "beta": beta, "test_acc": round(acc, 4), "ebops": round(trained.ebops or 0),
        "lut_da4ml": da4ml.lut, "ff_da4ml": da4ml.ff, "lut_yosys": None, "ff_yosys": None, "dsp_yosys": None,
        "cycles@200MHz": proj.latency.cycles if proj.latency else None,
        "ns": proj.latency.ns if proj.latency else None, "train_s": round(train_s, 1),
        "convert_s": round(convert_s, 1),
    }
    note = f"{'-'.join(str(w) for w in sweep['hidden'])} MLP, {sweep['epochs']} epochs, {len(data.y_test)} test events"
    try:
        y = rtl_yosys_resources(proj.path, cfg.firmware.part, log_path=ctx.workdir / cfg.name / "yosys.log")
        values.update(lut_yosys=y.lut, ff_yosys=y.ff, dsp_yosys=y.dsp, yosys_s=getattr(y, "wall_s", None))
    except ToolError as err:
        note += f"; yosys not run: {err}"
    return Row("quality", f"fastml beta={beta:.0e}", values, note=note)


def quality_group(ctx: Context) -> list[Row]:
    """Rows of the ``quality`` group: the sweep, then the published figures (or why they are absent)."""
    from fastml.config import load_config
    from fastml.data import load_data

    sweep = QUICK_SWEEP if ctx.quick else FULL_SWEEP
    base = load_config(JET_CONFIG)
    data = load_data(base.data, base.config_dir, max_samples=sweep["max_samples"])
    rows: list[Row] = []
    for beta in sweep["betas"]:
        ctx.log(f"   beta={beta:g}")
        try:
            rows.append(_point(ctx, beta, sweep, data))
        except Exception as err:  # one failing point must not hide the others
            rows.append(not_run("quality", f"fastml beta={beta:.0e}", f"{type(err).__name__}: {err}"))
    ebops = {r.values.get("ebops") for r in rows if r.ran}
    if len(ebops) == 1 and sum(r.ran for r in rows) > 1:
        rows[-1].note += ("; EBOPs identical at every beta: the regulariser strength had no effect on the chosen "
                          "checkpoint (too few epochs, or the beta schedule does not reach the loss)")
    points = sorted((r.values["beta"], r.values["ebops"]) for r in rows if r.ran)
    if len(ebops) > 1 and len(points) > 1 and points[-1][1] >= points[0][1]:
        rows[-1].note += (f"; EBOPs did not fall as beta grew ({points[0][1]:.0f} at beta {points[0][0]:g}, "
                          f"{points[-1][1]:.0f} at beta {points[-1][0]:g}): the regulariser is not doing its job")
    for pub in PUBLISHED:
        if pub["figures"] is None:
            rows.append(not_run("quality", pub["source"], pub["why"]))
        else:
            rows.append(Row("quality", pub["source"], dict(pub["figures"]), note=PUBLISHED_NOTE))
    if rows:
        rows[-1].note = PUBLISHED_NOTE
    return rows
