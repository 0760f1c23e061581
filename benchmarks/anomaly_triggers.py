"""Anomaly-detection trigger figures (issue #17): full (or --quick) builds of configs/anomaly_ae.yaml and
configs/calo_conv.yaml, one table + JSON of what their reports say.

    .venv/bin/python -m benchmarks.anomaly_triggers [--quick] [--output-dir DIR] [--reuse]

Per recipe: signal efficiency at 1 kHz and 10 kHz of the 40 MHz bunch-crossing rate and ROC AUC per
signal (the quantised model on the whole test split, the firmware's figures where it is bit-exact; "not
run: ..." where the test split has too few SM events), mismatches per verification level, EBOPs, LUT/FF
(da4ml estimate, yosys where installed), latency, wall time per stage; for the student also its agreement
with the teacher. Writes benchmarks/results/anomaly_triggers[-quick].json and .md (overwritten: the newest
run; git keeps the history). ``--reuse``: read the reports of projects already built in --output-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECIPES = ("anomaly_ae.yaml", "calo_conv.yaml")


def _row(report: Any, wall_s: float | None) -> dict[str, Any]:
    task = report.task
    level = task["levels"]["quantized_test_split"]
    res = {src: {"lut": r.lut, "ff": r.ff, "dsp": r.dsp} for src, r in report.resources.items()}
    return {
        "name": report.name, "status": report.status, "backend": report.backend,
        "events": {"train": report.data.get("n_train"), "val": report.data.get("n_val"),
                   "test": report.data.get("n_test"), "sm_test": level["sm_events"]},
        "rates": level["rates"],
        "signals": level["signals"],
        "mean_auc": {"float": report.accuracy.float, "quantized": report.accuracy.quantized,
                     "firmware": report.accuracy.firmware},
        "mismatches": {k: {"samples": v.samples, "mismatches": v.mismatches} for k, v in report.verification.items()},
        "ebops": report.ebops, "resources": res,
        "latency": {"cycles": report.latency.cycles, "ns": report.latency.ns, "source": report.latency.source},
        "agreement": task.get("agreement", {}).get("quantized_test_split"),
        "teacher_signals": (task.get("teacher") or {}).get("signals"),
        "timings_s": report.timings_s, "build_wall_s": wall_s, "checks": report.checks,
    }


def _cell(v: Any) -> str:
    return "not run" if isinstance(v, str) or v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Anomaly-detection triggers ({'quick' if meta['quick'] else 'full recipes'})", "",
             f"{meta['machine']}; load average {meta['load_start']} at start, {meta['load_end']} at the end; "
             f"{meta['date']}.", ""]
    for r in rows:
        rates = list(r["rates"])
        lines += [f"## {r['name']} ({r['backend']}, {r['status']})", "",
                  f"Events: {r['events']}. Mismatches: " + ", ".join(
                      f"{k} {v['mismatches']}/{v['samples']}" for k, v in r["mismatches"].items())
                  + f". EBOPs {r['ebops']:.0f}. Latency {r['latency']['cycles']} cycles = {r['latency']['ns']} ns "
                  f"({r['latency']['source']}).", "",
                  "| signal | ROC AUC | " + " | ".join(f"eff. @ {x}" for x in rates) + " |",
                  "|---|---:|" + "---:|" * len(rates)]
        for name, s in r["signals"].items():
            eff = s["efficiency"]
            lines.append(f"| {name} | {_cell(s['auc'])} | "
                         + " | ".join(_cell(eff.get(x) if isinstance(eff, dict) else eff) for x in rates) + " |")
        for x, info in r["rates"].items():
            lines.append("" if not isinstance(info, str) else f"\n{x}: {info}")
        if r["teacher_signals"]:
            lines += ["", "Teacher (the autoencoder) on the same test events: " + ", ".join(
                f"{n} AUC {_cell(s['auc'])}" for n, s in r["teacher_signals"].items())]
        if r["agreement"]:
            a = r["agreement"]
            lines += ["", f"Student vs teacher: Pearson {a['pearson']:.3f}, Spearman {a['spearman']:.3f}, "
                          f"MAE {a['mae']:.3f} on {a['events']} events"]
        lines += ["", "| resources | LUT | FF | DSP |", "|---|---:|---:|---:|"]
        lines += [f"| {src} | {v['lut']} | {v['ff']} | {v['dsp']} |" for src, v in r["resources"].items()]
        lines += ["", "Wall time per stage (s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in r["timings_s"].items() if "." not in k)
            + (f"; whole build {r['build_wall_s']:.0f} s" if r["build_wall_s"]
               else "; reused (--reuse): the figures of the project built earlier, read from its report"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--output-dir", default="/tmp/fastml-bench-anomaly")
    ap.add_argument("--reuse", action="store_true", help="read already built projects' reports")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES, help="default: both")
    args = ap.parse_args(argv)
    from fastml.pipeline import build
    from fastml.recipe import load_config
    from fastml.report import load_report

    load_start = os.getloadavg()[0]
    rows = []
    teacher_model: Path | None = None
    for recipe in args.recipes:
        overrides: dict[str, Any] = {"firmware": {"output_dir": args.output_dir}}
        if recipe == "calo_conv.yaml" and teacher_model is not None and teacher_model.is_file():
            # the student learns the teacher this run just built, instead of training it a second time
            overrides["model"] = {"teacher_model": str(teacher_model)}
        cfg = load_config(REPO / "configs" / recipe, overrides=overrides)
        wall = None
        if args.reuse and (cfg.project_dir / "report.json").is_file():
            report = load_report(cfg.project_dir)
        else:
            t0 = time.perf_counter()
            report = build(cfg, quick=args.quick, progress=False)
            wall = time.perf_counter() - t0
        rows.append(_row(report, wall))
        if recipe == "anomaly_ae.yaml":
            teacher_model = cfg.project_dir / "model" / "model.keras"
    meta = {"quick": args.quick, "date": time.strftime("%Y-%m-%d %H:%M"), "load_start": round(load_start, 1),
            "load_end": round(os.getloadavg()[0], 1),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    stem = REPO / "benchmarks" / "results" / f"anomaly_triggers{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str) + "\n")
    text = markdown(rows, meta)
    stem.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
