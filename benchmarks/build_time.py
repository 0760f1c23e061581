"""Build time per stage (YAML to verified project) and the build's peak memory.

``fastml build`` runs in a child process (``benchmarks.build_child``) so its peak RSS can be read
with ``wait4``; the hand-written hls4ml / conifer scripts in ``benchmarks/handwritten/`` then redo the
convert + compile + predict steps on the *same* trained model and events, also in a child process.
Training and data loading have no hand-written counterpart here (both sides would call the same Keras
``fit``), so only the stages both sides do are compared.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .core import REPO_ROOT, Context, Row, not_run, run_child

JET_CONFIG = REPO_ROOT / "configs" / "jet_tagger.yaml"
BDT_CONFIG = REPO_ROOT / "configs" / "jet_bdt.yaml"
HANDWRITTEN = Path(__file__).resolve().parent / "handwritten"

#: --quick: a one-hidden-layer tagger without the float twin, on ``fastml build --quick`` data/epochs,
#: so that the whole benchmark fits in 3 minutes on 2 cores. The full run builds the recipe as written.
QUICK_JET_OVERRIDES: dict[str, Any] = {"model": {"mlp": {"hidden": [16]}}, "train": {"float_baseline": False}}
#: --quick: 4 boosting rounds (20 trees) instead of the recipe's 20 (100 trees): conifer's compile
#: time grows with the number of trees (about 75 s for 100 trees here).
QUICK_BDT_OVERRIDES: dict[str, Any] = {"model": {"bdt": {"n_estimators": 4}}}


def csim_cache_env(ctx: Context) -> dict[str, str]:
    """The run's own, initially empty C-simulation compile cache: builds here pay the first build's compile
    (a user's ~/.cache would make them cache hits), and later groups reuse what they stored."""
    from fastml.backends.hls4ml.csim_cache import CACHE_ENV

    return {CACHE_ENV: str(ctx.workdir / "csim-cache")}


def run_build(ctx: Context, config: Path, tag: str, overrides: dict[str, Any] | None = None,
              timeout_s: float = 1500) -> dict[str, Any]:
    """Build ``config`` in a child process into ``ctx.workdir/tag``; returns the child's JSON plus
    ``wall_s`` and ``max_rss_mib`` (wait4). Raises ``RuntimeError`` with the child's last line on failure."""
    out_json = ctx.workdir / f"{tag}.build.json"
    cmd = [sys.executable, "-m", "benchmarks.build_child", str(config), str(out_json),
           "--output-dir", str(ctx.workdir / tag), "--overrides", json.dumps(overrides or {})]
    if ctx.quick:
        cmd.append("--quick")
    res = run_child(cmd, cwd=REPO_ROOT, env={**os.environ, **csim_cache_env(ctx)}, timeout_s=timeout_s)
    (ctx.workdir / f"{tag}.build.log").write_text(res.stdout + "\n" + res.stderr)
    if res.returncode != 0 or not out_json.is_file():
        from .core import last_line

        raise RuntimeError(f"fastml build {config.name} failed (exit {res.returncode}): {last_line(res.stderr)}"
                           f" (log: {ctx.workdir / f'{tag}.build.log'})")
    data = json.loads(out_json.read_text())
    data["wall_s"] = round(res.wall_s, 2)
    data["max_rss_mib"] = res.max_rss_mib
    return data


def _handwritten(ctx: Context, script: str, model: Path, events: Path, tag: str, extra: list[str],
                 env: dict[str, str] | None = None) -> dict[str, Any]:
    out_dir = ctx.workdir / tag
    cmd = [sys.executable, str(HANDWRITTEN / script), str(model), str(events), str(out_dir), *extra]
    res = run_child(cmd, cwd=ctx.workdir, env=env, timeout_s=1200)
    (ctx.workdir / f"{tag}.log").write_text(res.stdout + "\n" + res.stderr)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        from .core import last_line

        raise RuntimeError(f"{script} failed (exit {res.returncode}): {last_line(res.stderr)}")
    data = json.loads(lines[-1])
    data["wall_s"] = round(res.wall_s, 2)
    data["max_rss_mib"] = res.max_rss_mib
    return data


def _fastml_row(item: str, b: dict[str, Any], convert_key: str, compile_key: str) -> Row:
    t = b["timings_s"]
    convert_s = t.get(f"convert.{convert_key}")
    compile_s = t.get(f"convert.{compile_key}")
    cv = (t.get("convert") or 0) + (t.get("verify") or 0)
    mism = sum(v.get("mismatches", 0) for v in b["verification"].values())
    return Row("build", item, {
        "import_s": b["import_s"], "data_s": t.get("data"), "train_s": t.get("train"),
        "convert_s": convert_s, "compile_s": compile_s, "convert_stage_s": t.get("convert"),
        "verify_s": t.get("verify"), "estimate_s": t.get("estimate"), "save_s": t.get("save"),
        "convert+verify_s": round(cv, 2), "process_wall_s": b["wall_s"],
        "events": next(iter(b["verification"].values()))["samples"] if b["verification"] else None,
        "mismatches": mism,
    }, note="convert_stage_s = convert_s + compile_s + the rest of the backend's convert step; "
            "verify_s = reference + simulation of the events")


def _handwritten_row(item: str, h: dict[str, Any], note: str) -> Row:
    t = h["timings_s"]
    cv = t["convert"] + t["compile"] + t["predict"]
    return Row("build", item, {
        "import_s": t["import"], "convert_s": t["convert"], "compile_s": t["compile"], "verify_s": t["predict"],
        "convert+verify_s": round(cv, 2), "process_wall_s": h["wall_s"], "events": h["events"],
        "mismatches": h.get("mismatches"),
    }, note=note)


def jet_rows(ctx: Context) -> list[Row]:
    """fastml build of the jet tagger vs the hand-written hls4ml script (DA strategy, same model/events)."""
    rows: list[Row] = []
    try:
        b = run_build(ctx, JET_CONFIG, "jet_tagger", QUICK_JET_OVERRIDES if ctx.quick else None)
    except RuntimeError as err:
        return [not_run("build", "jet_tagger: fastml build", str(err)),
                not_run("build", "jet_tagger: hand-written hls4ml", "needs the fastml build's trained model")]
    ctx.shared["jet_build"] = b
    rows.append(_fastml_row("jet_tagger: fastml build", b, "hls4ml_convert", "csim_compile"))
    project = Path(b["project_dir"])
    try:
        h = _handwritten(ctx, "hls4ml_jet_tagger.py", project / "model" / "model.keras",
                         project / "model" / "verify_inputs.npz", "handwritten_hls4ml", [])
        rows.append(_handwritten_row("jet_tagger: hand-written hls4ml", h,
                                     "benchmarks/handwritten/hls4ml_jet_tagger.py: load, convert, compile, predict; "
                                     "mismatches vs Keras"))
    except RuntimeError as err:
        rows.append(not_run("build", "jet_tagger: hand-written hls4ml", str(err)))
    return rows


def bdt_rows(ctx: Context) -> list[Row]:
    """fastml build of the BDT vs the hand-written conifer script (same trained xgboost model and events)."""
    if not BDT_CONFIG.is_file():
        return [not_run("build", "jet_bdt: fastml build", f"{BDT_CONFIG.relative_to(REPO_ROOT)} does not exist yet"),
                not_run("build", "jet_bdt: hand-written conifer", "needs the BDT build's trained model")]
    try:
        b = run_build(ctx, BDT_CONFIG, "jet_bdt", QUICK_BDT_OVERRIDES if ctx.quick else None)
    except RuntimeError as err:
        return [not_run("build", "jet_bdt: fastml build", str(err)),
                not_run("build", "jet_bdt: hand-written conifer", "needs the BDT build's trained model")]
    rows = [_fastml_row("jet_bdt: fastml build", b, "write", "compile")]
    project = Path(b["project_dir"])
    model = project / "model" / "model.json"
    if not model.is_file():
        rows.append(not_run("build", "jet_bdt: hand-written conifer", f"no xgboost model at {model}"))
        return rows
    try:
        from fastml._internal.tools import conifer_env

        env = {**os.environ, **conifer_env()}
        backend = b["firmware"].get("conifer_backend", "xilinxhls")
        backend = backend if backend in ("xilinxhls", "cpp") else "xilinxhls"
        precision = b["firmware"].get("precision") or {}
        extra = ["--backend", backend, *(a for k in ("input", "threshold", "score") if k in precision
                                         for a in (f"--{k}", str(precision[k])))]
        h = _handwritten(ctx, "conifer_bdt.py", model, project / "model" / "verify_inputs.npz", "handwritten_conifer",
                         extra, env=env)
        chosen = "/".join(str(precision[k]) for k in ("input", "threshold", "score") if k in precision)
        rows.append(_handwritten_row("jet_bdt: hand-written conifer", h,
                                     "benchmarks/handwritten/conifer_bdt.py at the precision fastml chose "
                                     f"({chosen or 'ap_fixed<18,8>'}); no precision search, no bit-exact check"))
    except Exception as err:  # ToolError (missing headers) or the script failing
        rows.append(not_run("build", "jet_bdt: hand-written conifer", str(err)))
    return rows


def build_group(ctx: Context) -> list[Row]:
    """Rows of the ``build`` group: jet tagger and BDT, fastml vs hand-written."""
    return jet_rows(ctx) + bdt_rows(ctx)


def memory_group(ctx: Context) -> list[Row]:
    """Peak RSS of the jet-tagger build (reuses the build group's child if it ran, else builds now)."""
    b = ctx.shared.get("jet_build")
    if b is None:
        try:
            b = run_build(ctx, JET_CONFIG, "jet_tagger_mem", QUICK_JET_OVERRIDES if ctx.quick else None)
        except RuntimeError as err:
            return [not_run("memory", "jet_tagger build", str(err))]
    return [
        Row("memory", "fastml build jet_tagger: the build's python process", {"peak_rss_mib": b["self_max_rss_mib"]},
            note="ru_maxrss of the build process itself (RUSAGE_SELF, read at its end)"),
        Row("memory", "fastml build jet_tagger: largest process of the build", {"peak_rss_mib": b["max_rss_mib"]},
            note="ru_maxrss over the build and every tool it ran (g++, verilator, yosys), read by a bare launcher; "
                 "Linux reports the largest single process, not the sum of concurrent ones"),
    ]
