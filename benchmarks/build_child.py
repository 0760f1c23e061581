"""Child process for the build benchmark: ``python -m benchmarks.build_child CONFIG OUT_JSON [options]``.

Runs ``fastml.pipeline.build`` exactly as ``fastml build`` does (same function), then writes the
report's per-stage timings and this process's own peak RSS to ``OUT_JSON``. Run as a separate
process so the parent can read the build's peak memory from ``wait4`` and so imports are counted.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

T_START = time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.build_child")
    p.add_argument("config")
    p.add_argument("out_json")
    p.add_argument("--quick", action="store_true", help="fastml build --quick")
    p.add_argument("--output-dir", required=True, help="parent folder of the project (firmware.output_dir)")
    p.add_argument("--overrides", default="{}", help="JSON dict merged over the YAML (as load_config does)")
    args = p.parse_args(argv)

    from fastml.pipeline import build
    from fastml.recipe import load_config

    t_imported = time.perf_counter()
    overrides = json.loads(args.overrides)
    overrides.setdefault("firmware", {})["output_dir"] = args.output_dir
    t0 = time.perf_counter()
    cfg = load_config(args.config, overrides)
    t_config = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = build(cfg, quick=args.quick, progress=False, log=lambda m: print(m, file=sys.stderr, flush=True))
    t_build = time.perf_counter() - t0
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(args.out_json).write_text(json.dumps({
        "project_dir": str(cfg.project_dir),
        "import_s": round(t_imported - T_START, 3),
        "config_s": round(t_config, 3),
        "build_s": round(t_build, 3),
        "timings_s": report.timings_s,
        "verification": {k: v.model_dump(mode="json") for k, v in report.verification.items()},
        "accuracy": report.accuracy.model_dump(mode="json"),
        "auc": report.auc,
        "ebops": report.ebops,
        "latency": report.latency.model_dump(mode="json"),
        "resources": {k: v.model_dump(mode="json") for k, v in report.resources.items()},
        "checks": report.checks,
        "firmware": report.firmware,
        "self_max_rss_mib": round(self_kib / 1024, 1),
        "tool_children_max_rss_mib": round(children_kib / 1024, 1),
    }, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
