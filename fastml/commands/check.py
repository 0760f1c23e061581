"""``fastml check``: evaluate a build report against its budgets; exit 0 only if every check passes."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

HELP = "check a built project (or report.json) against its budgets; exit 1 if any fails"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("check", help=HELP, description=HELP + ". A required check that could not run "
                              "(e.g. a vivado budget with no vivado numbers in the report) counts as a failure.")
    p.add_argument("target", metavar="PROJECT_DIR_OR_REPORT", help="hls_projects/<name>/ or its report.json")
    p.add_argument("--budgets", metavar="CONFIG_YAML",
                   help="YAML with a 'budgets:' section (a build config) or just budget keys; "
                        "default: the budgets recorded in the report")
    p.add_argument("--baseline", metavar="OTHER_REPORT_OR_DIR",
                   help="report.json, project folder, or a folder holding <name>/report.json to compare against")
    p.add_argument("--allow-missing-baseline", action="store_true",
                   help="if the --baseline path holds no report for this project, check without a baseline "
                        "(for a config new in this merge request)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML (one test case per budget)")
    p.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (merge-request comment)")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    p.set_defaults(func=run_check)


def load_budgets_file(path: str | Path) -> tuple[Any, str | None]:
    """Read budgets from YAML: ``(BudgetsConfig, firmware.part or None)``; one-line ``ConfigError`` if malformed.

    The file is either a build config (its ``budgets:`` section is used, and its ``firmware.part`` for
    percentage budgets) or a mapping of budget keys.
    """
    from pydantic import ValidationError

    from .._internal.schema import pydantic_error_line
    from ..errors import ConfigError
    from ..recipe import BudgetsConfig, read_yaml

    path = Path(path)
    raw = read_yaml(path, "budgets file")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping with a 'budgets:' section or budget keys, "
                          f"got {type(raw).__name__}")
    part = None
    prefix = ""
    section: Any = raw
    if "budgets" in raw:
        section, prefix = raw["budgets"] or {}, "budgets."
        firmware = raw.get("firmware")
        part = firmware.get("part") if isinstance(firmware, dict) else None
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: key 'budgets': expected a mapping of budget keys, got {type(section).__name__}")
    try:
        budgets = BudgetsConfig.model_validate(section)
    except ValidationError as err:
        where = ("budgets",) if prefix else ()
        raise ConfigError(pydantic_error_line(path, err, BudgetsConfig, prefix=where)) from None
    _check_regression_metrics(path, budgets, prefix)
    return budgets, part


def _check_regression_metrics(path: Path | str, budgets: Any, prefix: str) -> None:
    from ..errors import ConfigError
    from ..gate import REGRESSION_METRICS

    for metric in budgets.max_regression:
        if metric not in REGRESSION_METRICS:
            raise ConfigError(f"{path}: key '{prefix}max_regression.{metric}': unknown metric; "
                              f"expected one of: {', '.join(REGRESSION_METRICS)}")


def _find_baseline(path: Path, name: str) -> Path | None:
    if path.is_file():
        return path
    for candidate in (path / "report.json", path / name / "report.json"):
        if candidate.is_file():
            return candidate
    return None


def run_check(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from .._internal.schema import pydantic_error_line
    from ..errors import FastmlError
    from ..gate import check_budgets, part_totals
    from ..recipe import BudgetsConfig
    from ..report import load_report

    report = load_report(args.target)
    part_resources = None
    if args.budgets:
        budgets, part = load_budgets_file(args.budgets)
        if part and not report.firmware.get("part") and part_totals(part):
            part_resources = {"part": part, **(part_totals(part) or {})}
    else:
        try:
            budgets = BudgetsConfig.model_validate(report.budgets)
        except ValidationError as err:
            raise FastmlError(pydantic_error_line(Path(args.target), err, BudgetsConfig, prefix=("budgets",))) from None
        _check_regression_metrics(args.target, budgets, "budgets.")
    baseline = None
    if args.baseline:
        found = _find_baseline(Path(args.baseline), report.name)
        if found is not None:
            baseline = load_report(found)
            if baseline.name != report.name:  # comparing two different projects would gate on nonsense
                raise FastmlError(f"{found}: baseline is a report of project '{baseline.name}', expected one of "
                                  f"'{report.name}' (point --baseline at that project's report)")
        elif not args.allow_missing_baseline:
            raise FastmlError(f"{args.baseline}: no baseline report.json for '{report.name}' here "
                              "(use --allow-missing-baseline to check without one)")
        else:
            print(f"fastml check: no baseline for '{report.name}' under {args.baseline}; checking without one")
    result = check_budgets(report, budgets, baseline, part_resources)
    print(result.to_table())
    for option, text in (("junit", result.to_junit_xml), ("markdown", result.to_markdown), ("json", result.to_json)):
        out = getattr(args, option)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(text())
    return 0 if result.passed else 1
