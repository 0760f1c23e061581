"""``kinds`` group: every shipped network recipe built by ``fastml build`` (da4ml RTL, verilator-verified),
side by side with the HLF MLP (``jet_tagger_rtl``): accuracy, per-class AUC, EBOPs, LUT/FF from da4ml's
cost model and from yosys, latency, wall times, and each figure as a ratio to the HLF MLP's in the same run.

All recipes use the same jets (``builtin:jets_constituents`` holds the constituents of ``builtin:jets_hlf``'s
jets, same split seed), so the accuracies compare directly. ``--quick`` builds with ``fastml build --quick``.
"""

from __future__ import annotations

from typing import Any

from .build_time import run_build
from .core import REPO_ROOT, Context, Row, not_run

#: A full build's limit: the HLF MLP's 600 epochs alone took ~1 300 s at load ~16 on 2 cores (group
#: ``training``), more than build_time's 1 500 s default leaves for convert, verify and yosys.
FULL_BUILD_TIMEOUT_S = 3600

#: (recipe, what it is); the first is the reference the others are compared with.
RECIPES: tuple[tuple[str, str], ...] = (
    ("jet_tagger_rtl", "HLF MLP 64-32-32 (16 features)"),
    ("jet_lut", "LUT network, HGQ2 QDenseT (16 features)"),
    ("jet_deepsets", "Deep Sets (16 constituents)"),
    ("jet_attention", "self-attention (16 constituents)"),
)


def _figures(b: dict[str, Any]) -> dict[str, Any]:
    acc = b["accuracy"]
    res = b["resources"]
    da4ml, yosys = res.get("da4ml_estimate", {}), res.get("yosys", {})
    return {
        "acc_float": acc.get("float"), "acc_firmware": acc.get("firmware"),
        "mean_auc_firmware": (sum(b["auc"]["firmware"].values()) / len(b["auc"]["firmware"])
                              if b.get("auc", {}).get("firmware") else None),
        # per class (one vs rest), firmware outputs: where a tagger gains or loses against the MLP
        **{f"auc_{c}": a for c, a in (b.get("auc", {}).get("firmware") or {}).items()},
        "ebops": b.get("ebops"),
        "lut_da4ml": da4ml.get("lut"), "ff_da4ml": da4ml.get("ff"),
        "lut_yosys": yosys.get("lut", "not run"), "ff_yosys": yosys.get("ff", "not run"),
        "cycles": b["latency"].get("cycles"), "ns": b["latency"].get("ns"),
        "mismatches": sum(v["mismatches"] for v in b["verification"].values()),
        "events": min((v["samples"] for v in b["verification"].values()), default=0),
        "train_s": b["timings_s"].get("train"), "wall_s": b["wall_s"],
    }


def kinds_group(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    reference: dict[str, Any] | None = None
    for recipe, what in RECIPES:
        try:
            b = run_build(ctx, REPO_ROOT / "configs" / f"{recipe}.yaml", f"kinds_{recipe}",
                          timeout_s=FULL_BUILD_TIMEOUT_S)
        except RuntimeError as err:
            rows.append(not_run("kinds", recipe, str(err)))
            continue
        values = _figures(b)
        if reference is None and recipe == RECIPES[0][0]:
            reference = values
        elif reference is not None:
            for key in ("lut_da4ml", "lut_yosys", "ebops", "cycles"):
                mine, ref = values.get(key), reference.get(key)
                ok = isinstance(mine, (int, float)) and isinstance(ref, (int, float)) and ref
                values[f"{key}_vs_mlp"] = round(mine / ref, 3) if ok else "not run"
            if values["acc_firmware"] is not None and reference["acc_firmware"] is not None:
                values["acc_vs_mlp_points"] = round(100 * (values["acc_firmware"] - reference["acc_firmware"]), 2)
        levels = ", ".join(f"{k} {v['mismatches']}/{v['samples']}" for k, v in b["verification"].items())
        rows.append(Row("kinds", f"{recipe}: {what}", values, note=f"mismatches/events: {levels}"))
    return rows
