"""The rtl backend's two compilers side by side: the same trained model through da4ml 0.5.2 and alkaid in one run.

For each recipe: train once (``--quick``: the quick epochs), then convert with ``firmware.compiler`` da4ml and
alkaid into the scratch folder, verify on the recipe's events (mismatches per level), and synthesise each
Verilog with yosys when it is installed (``synth_xilinx`` of ``fastml._internal.yosys``). Rows: LUT/FF by
yosys and by the compiler's own cost model, pipeline stages at the recipe's clock, conversion time (trace +
write + verilator), mismatches. A compiler that is not installed gives a "not run" row.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from .core import REPO_ROOT, Context, Row, not_run, timed

#: The smallest shipped rtl recipe first; the full run adds the others one by one as time allows.
QUICK_RECIPES = ("jet_tagger_rtl",)
COMPILERS = ("da4ml", "alkaid")


def compilers_group(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    for recipe in QUICK_RECIPES:
        rows.extend(_recipe_rows(ctx, recipe))
    return rows


def _recipe_rows(ctx: Context, recipe: str) -> list[Row]:
    from fastml._internal.keras_backend import ensure_backend

    ensure_backend()
    from fastml._internal.tools import find_yosys
    from fastml.data import load_data
    from fastml.models import train
    from fastml.recipe import load_config

    cfg = load_config(REPO_ROOT / "configs" / f"{recipe}.yaml")
    data = load_data(cfg.data, cfg.config_dir)
    with timed() as t_train:
        trained = train(cfg, data, epochs=2 if ctx.quick else None, progress=False)
    ctx.log(f"{recipe}: trained in {t_train['s']:.0f} s")
    x = data.x_test[: cfg.verify.samples]
    rows = []
    for compiler in COMPILERS:
        if compiler == "alkaid" and importlib.util.find_spec("alkaid") is None:
            rows.append(not_run("compilers", f"{recipe}: {compiler}", "alkaid is not installed"))
            continue
        rows.append(_one(ctx, recipe, cfg, trained, x, compiler, find_yosys() is not None))
    return rows


def _one(ctx: Context, recipe: str, cfg: Any, trained: Any, x: Any, compiler: str, yosys: bool) -> Row:
    from fastml.backends import convert
    from fastml.backends.rtl.estimate import rtl_yosys_resources
    from fastml.verification import verify_project

    fw = cfg.firmware.model_copy(update={"compiler": compiler})
    c = cfg.model_copy(update={"firmware": fw})
    project_dir = ctx.workdir / "compilers" / f"{recipe}_{compiler}"
    with timed() as t_conv:
        project = convert(trained, c, project_dir)
    with timed() as t_ver:
        levels, _ = verify_project(project, x)
    res, lat = project.resources["da4ml_estimate"], project.latency
    values: dict[str, Any] = {
        "compiler": res.compiler,  # type: ignore[attr-defined]
        "lut_est": res.lut, "ff_est": res.ff, "stages": lat.cycles if lat else None,
        "clock_ns": fw.clock_period_ns, "convert_s": round(t_conv["s"], 1),
        "trace_s": round(project.timings_s.get("trace", 0.0), 2),
        "verify_s": round(t_ver["s"], 2),
    }
    for level, v in levels.items():
        values[f"mismatches_{level}"] = v.mismatches
    values["events"] = len(x)
    note = ""
    if yosys:
        with timed() as t_syn:
            y = rtl_yosys_resources(project.path, fw.part, log_path=Path(project_dir) / "logs" / "yosys.log")
        values.update(lut_yosys=y.lut, ff_yosys=y.ff, yosys_s=round(t_syn["s"], 1))
        note = str(getattr(y, "tool", ""))
    else:
        note = "yosys: not run: not installed"
    return Row("compilers", f"{recipe}: {compiler}", values, note=note)
