"""CI templates: valid YAML, every ``fastml`` verb and option they call exists in the CLI parser, and
``ci/check_all.sh`` gates every project (exit non-zero if any fails, or if there is nothing to check)."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fastml.cli
from fastml.recipe import BudgetsConfig
from fastml.report import Latency, Report, Resources, VerificationLevel, write_report

CI = Path(__file__).resolve().parents[2] / "ci"
TEMPLATES = {"gitlab": CI / "gitlab-ci.yml", "github": CI / "github-actions.yml"}
#: `fastml <verb> ...` as a command (not `pip install fastml`, not a path like ci/fastml.yml).
_INVOCATION = re.compile(r"(?:^|[;&|(]|\bthen|\bdo|\$\{?fastml\[@\]\}?)\s*fastml\s+([^\n;&|]*)")


def _present_modules() -> tuple[str, ...]:
    return tuple(m for m in fastml.cli.COMMAND_MODULES if importlib.util.find_spec(m) is not None)


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    """``fastml.cli.make_parser()``; verb modules not written yet by other engineers are left out."""
    original = fastml.cli.COMMAND_MODULES
    fastml.cli.COMMAND_MODULES = _present_modules()
    try:
        return fastml.cli.make_parser()
    finally:
        fastml.cli.COMMAND_MODULES = original


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


def _shell_lines(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def invocations(shell_text: str) -> list[list[str]]:
    """Argument lists of every ``fastml ...`` command in shell text."""
    out = []
    for line in _shell_lines(shell_text):
        if line.startswith("pip ") or "pip install" in line:
            continue
        for match in _INVOCATION.finditer(line):
            out.append(shlex.split(match.group(1), posix=True))
    return out


def template_invocations(name: str) -> list[list[str]]:
    doc = yaml.safe_load(TEMPLATES[name].read_text())
    return [inv for s in _strings(doc) for inv in invocations(s)]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_templates_are_valid_yaml(name):
    doc = yaml.safe_load(TEMPLATES[name].read_text())
    assert isinstance(doc, dict)
    text = TEMPLATES[name].read_text()
    assert "apt-get install" in text and "yosys" in text and "pip install" in text
    assert "configs/*.yaml" in text and "hls_projects/*/report.*" in text
    assert "ci/check_all.sh" in text


def test_gitlab_structure():
    doc = yaml.safe_load(TEMPLATES["gitlab"].read_text())
    assert doc["stages"] == ["build", "check"]
    build, check = doc["fastml-build"], doc["fastml-check"]
    assert build["stage"] == "build" and check["stage"] == "check"
    assert "hls_projects/*/report.*" in build["artifacts"]["paths"] and build["artifacts"]["when"] == "always"
    assert check["artifacts"]["reports"]["junit"] == "fastml-check/*.junit.xml"
    script = "\n".join(check["script"])
    assert "$CI_DEFAULT_BRANCH/download?job=fastml-build" in script  # baseline: default branch's reports


def test_github_structure():
    doc = yaml.safe_load(TEMPLATES["github"].read_text())
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in on and "push" in on
    steps = doc["jobs"]["fastml"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/upload-artifact") for u in uses)
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "gh run download" in runs and "GITHUB_STEP_SUMMARY" in runs


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_fastml_command_in_templates_exists(parser, name):
    calls = template_invocations(name)
    assert {c[0] for c in calls} == {"build"}, calls  # checks go through ci/check_all.sh
    _assert_known(parser, calls)


def test_every_fastml_command_in_check_all_exists(parser):
    text = (CI / "check_all.sh").read_text()
    assert '"${fastml[@]}" "${args[@]}"' in text
    args_line = next(line for line in _shell_lines(text) if line.startswith("args=(check"))
    call = shlex.split(args_line.removeprefix("args=(").rstrip(")"))
    call += ["--baseline", "B", "--allow-missing-baseline"]
    assert "args+=(--baseline \"$baseline\" --allow-missing-baseline)" in text
    _assert_known(parser, [call])
    for option in ("--junit", "--markdown", "--json", "--baseline"):
        assert option in call


def _assert_known(parser: argparse.ArgumentParser, calls: list[list[str]]) -> None:
    verbs = _subparsers(parser)
    for call in calls:
        verb, rest = call[0], call[1:]
        assert verb in verbs, f"templates call 'fastml {verb}', which the CLI does not have ({sorted(verbs)})"
        known = set(verbs[verb]._option_string_actions)
        for token in rest:
            if token.startswith("--"):
                assert token.split("=")[0] in known, f"'fastml {verb}' has no option {token}"


def test_invocation_finder_sees_commands_not_package_names():
    text = "pip install fastml\nfastml build cfg.yaml || status=1\nif x; then fastml check a --junit j; fi\n"
    assert invocations(text) == [["build", "cfg.yaml"], ["check", "a", "--junit", "j"]]


# ----------------------------------------------------------------------------------- check_all.sh


def _report(name: str, lut: int, budget: int) -> Report:
    report = Report(name=name, backend="rtl", firmware={"part": "xcvu13p-flga2577-2-e"})
    report.resources["yosys"] = Resources(lut=lut, ff=10, dsp=0)
    report.set_latency(Latency(cycles=3, ii=1, source="da4ml_estimate"))
    report.verification["emulator"] = VerificationLevel(samples=100, mismatches=0)
    report.budgets = BudgetsConfig(lut=budget, max_regression={"lut": "5%"}).model_dump(mode="json")
    return report


@pytest.fixture(scope="module")
def fastml_wrapper(tmp_path_factory) -> str:
    """A ``fastml`` executable for this interpreter (with only the verb modules that exist yet)."""
    path = tmp_path_factory.mktemp("bin") / "fastml"
    modules = repr(_present_modules())
    path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -c "
                    f"\"import sys, fastml.cli as c; c.COMMAND_MODULES = {modules}; sys.exit(c.main())\" \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def run_check_all(fastml_wrapper: str, *args: str) -> subprocess.CompletedProcess:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, str(CI / "check_all.sh"), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "FASTML": fastml_wrapper})


def test_check_all_fails_if_any_project_fails(fastml_wrapper, tmp_path):
    projects, out = tmp_path / "hls_projects", tmp_path / "out"
    write_report(_report("small", lut=100, budget=1000), projects / "small")
    write_report(_report("big", lut=2000, budget=1000), projects / "big")
    done = run_check_all(fastml_wrapper, str(projects), "", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 2 project(s) failed their budgets: big" in done.stdout
    for name in ("small", "big"):
        assert (out / f"{name}.junit.xml").is_file() and (out / f"{name}.json").is_file()
    summary = (out / "summary.md").read_text()
    assert "`small` — ✅ passed" in summary and "`big` — ❌ failed" in summary


def test_check_all_passes_when_all_pass_and_uses_baseline(fastml_wrapper, tmp_path):
    projects, base, out = tmp_path / "hls_projects", tmp_path / "base", tmp_path / "out"
    write_report(_report("small", lut=100, budget=1000), projects / "small")
    write_report(_report("new", lut=100, budget=1000), projects / "new")  # no baseline: checked without one
    write_report(_report("small", lut=100, budget=1000), base / "small")
    done = run_check_all(fastml_wrapper, str(projects), str(base), str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all 2 project(s) within budget" in done.stdout
    assert "lut regression" in done.stdout and "+0.0%" in done.stdout
    # a regression against the baseline fails the gate
    write_report(_report("small", lut=50, budget=1000), base / "small")
    assert run_check_all(fastml_wrapper, str(projects), str(base), str(out)).returncode == 1


def test_check_all_with_nothing_to_check_fails(fastml_wrapper, tmp_path):
    (tmp_path / "hls_projects").mkdir()
    done = run_check_all(fastml_wrapper, str(tmp_path / "hls_projects"), "", str(tmp_path / "out"))
    assert done.returncode == 1 and "nothing was checked" in done.stderr
    assert run_check_all(fastml_wrapper, str(tmp_path / "missing")).returncode == 2


def _build_loop(name: str) -> str:
    """The shell text of a template's step that builds every config."""
    doc = yaml.safe_load(TEMPLATES[name].read_text())
    loops = [s for s in _strings(doc) if "for cfg in configs/" in s]
    assert len(loops) == 1, f"{name}: expected one build loop, found {len(loops)}"
    return loops[0]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_build_loop_builds_recipes_and_skips_scan_recipes(name, tmp_path):
    """Every build recipe in configs/ is built, a scan recipe is not (``fastml build`` would reject it)."""
    bin_dir, configs = tmp_path / "bin", tmp_path / "configs"
    bin_dir.mkdir()
    configs.mkdir()
    (configs / "tagger.yaml").write_text("name: tagger\nmodel: {kind: mlp}\n")
    (configs / "tagger_scan.yaml").write_text("name: tagger_scan\nbase: tagger.yaml\nscan:\n  grid: {}\n")
    log = tmp_path / "calls.txt"
    fake = bin_dir / "fastml"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {shlex.quote(str(log))}\n')
    fake.chmod(0o755)
    # GitLab runs scripts with sh, GitHub Actions with bash: sh covers the stricter of the two.
    done = subprocess.run(["sh", "-e", "-c", _build_loop(name)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().splitlines() == ["build configs/tagger.yaml"]
    assert "skipping configs/tagger_scan.yaml" in done.stdout
