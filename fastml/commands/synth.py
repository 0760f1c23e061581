"""``fastml synth``: run Vitis HLS / Vivado on built projects (where installed) and fold their reports in.

Exit codes: 0 every project synthesised (or, with ``--from-reports``, had reports read); 1 at least one
project failed (tool error, timeout, no report written); 3 nothing failed but at least one project could
not run ("not run: vivado not found" and the like: the tools are not installed); 2 bad input (a missing
report.json, an unknown stage), as for every fastml command.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_NOT_RUN = 3


@dataclass
class _Target:
    label: str
    project_dir: Path
    stages: list[str]
    timeout_s: int


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "synth", help="run Vitis HLS / Vivado on built projects and add their reports to report.json",
        description="Run the vendor flow (hls4ml build_prj.tcl, da4ml build_vivado_prj.tcl, conifer build) on "
                    "each built project, side by side, and fold the tools' reports into its report.json. "
                    "Exit 0: all ok; 1: one or more failed; 3: tools not installed (not run); 2: bad input.")
    p.add_argument("targets", nargs="+", metavar="CONFIG|PROJECT_DIR",
                   help="a build recipe (its project under firmware.output_dir) or a project folder")
    p.add_argument("--stages", default=None,
                   help="comma-separated subset of csynth,cosim,export,vsynth (default: the recipe's synth.stages, "
                        "else csynth)")
    p.add_argument("--jobs", type=int, default=1, help="projects run side by side (default 1)")
    p.add_argument("--timeout", type=int, default=None, metavar="S",
                   help="seconds per project before the tools are killed (default: synth.timeout_s, 4 h)")
    p.add_argument("--from-reports", action="store_true",
                   help="run no tool: read the reports already in each project's firmware folder")
    p.set_defaults(func=run)


def _parse_stages(text: str | None) -> list[str] | None:
    from ..errors import FastmlError
    from ..synth import STAGES

    if text is None:
        return None
    stages = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise FastmlError(f"--stages {text!r}: expected a comma-separated subset of {','.join(STAGES)}")
    return stages


def _resolve(target: str, stages: list[str] | None, timeout: int | None) -> _Target:
    from ..errors import FastmlError
    from ..recipe import SynthConfig, project_config
    from . import resolve_project

    project_dir, cfg = resolve_project(target)
    if cfg is None:  # a project folder: the synth settings of the recipe copy the build left there
        cfg = project_config(project_dir) if (project_dir / "config.yaml").is_file() else None
    synth_cfg = cfg.synth if cfg is not None else SynthConfig()
    if not (project_dir / "report.json").is_file():
        raise FastmlError(f"{project_dir}: no report.json here (build the project first with 'fastml build')")
    return _Target(label=project_dir.name, project_dir=project_dir, stages=stages or list(synth_cfg.stages),
                   timeout_s=timeout if timeout is not None else synth_cfg.timeout_s)


def _summary(result: Any) -> str:
    parts = []
    for source in ("vitis_hls", "vivado"):
        res = result.resources.get(source)
        if res is not None:
            parts.append(f"{source} LUT {res.lut} FF {res.ff} DSP {res.dsp} BRAM18 {res.bram}")
    lat = result.latency.get("vitis_hls")
    if lat is not None:
        parts.append(f"latency {lat.cycles} cycles, II {lat.ii}")
    if result.timing.get("wns_ns") is not None:
        parts.append(f"WNS {result.timing['wns_ns']} ns")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..errors import FastmlError
    from ..pipeline import write_html_report
    from ..report import load_report, write_report
    from ..synth import SynthResult, collect_reports, find_vendor_tools, fold_into_report, run_synth

    if args.jobs < 1:
        raise FastmlError(f"--jobs {args.jobs}: expected a whole number >= 1")
    if args.timeout is not None and args.timeout < 1:
        raise FastmlError(f"--timeout {args.timeout}: expected seconds >= 1")
    stages = _parse_stages(args.stages)
    targets = [_resolve(t, stages, args.timeout) for t in args.targets]  # all inputs checked before anything runs
    reports = {t.project_dir: load_report(t.project_dir) for t in targets}
    tools = find_vendor_tools()
    lock = threading.Lock()
    total = len(targets)
    done = 0

    def say(line: str) -> None:
        with lock:
            print(line, flush=True)

    def one(target: _Target) -> SynthResult:
        backend = reports[target.project_dir].backend
        if args.from_reports:
            result = collect_reports(target.project_dir)
            result.backend, result.stages = backend, target.stages
            return result
        say(f"[synth] {target.label}: {backend}, stages {','.join(target.stages)}, timeout {target.timeout_s} s")
        try:
            return run_synth(target.project_dir, target.stages, target.timeout_s, backend, tools=tools)
        except FastmlError as err:  # e.g. no build script: this project fails, the others go on
            return SynthResult(project_dir=target.project_dir, backend=backend, stages=target.stages,
                               status="failed", message=str(err), tools=dict(tools))

    results: dict[Path, SynthResult] = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(one, t): t for t in targets}
        for future in as_completed(futures):
            target = futures[future]
            result = future.result()
            results[target.project_dir] = result
            report = fold_into_report(reports[target.project_dir], result)
            write_report(report, target.project_dir)
            write_html_report(target.project_dir, report)  # the page shows the vendor figures too
            done += 1
            detail = result.message if result.status == "failed" else _summary(result)
            say(f"[{done}/{total}] {target.label}: {result.status}" + (f" ({detail})" if detail else "")
                + (f" in {result.wall_s:.1f} s" if result.wall_s else ""))
    failed = [r for r in results.values() if r.status == "failed"]
    not_run = [r for r in results.values() if r.status.startswith("not run")]
    elapsed = time.perf_counter() - t0
    if failed:
        print(f"fastml synth: {len(failed)} of {total} project(s) failed "
              f"({', '.join(r.project_dir.name for r in failed)}); logs are in each project's logs/ "
              f"[{elapsed:.1f} s]", file=sys.stderr)
        return EXIT_FAILED
    if not_run:
        print(f"fastml synth: {len(not_run)} of {total} project(s) not run: {not_run[0].status[len('not run: '):]}; "
              "install Vitis HLS / Vivado (or source their settings64.sh) to get vendor numbers. "
              "Recorded as 'not run' in report.json checks.synth; no numbers were written.", file=sys.stderr)
        return EXIT_NOT_RUN
    return 0
