"""The CI templates run as what they are: ``ci/gitlab-ci.yml`` as a GitLab pipeline (gitlab-ci-local, shell
executor, each job in its own copy of the checkout, artifacts handed from job to job), and
``ci/github-actions.yml`` validated against the GitHub Actions workflow schema.

The pipeline runs the shipped template unchanged, in a throwaway git repository laid out as a user's would be
(``.gitlab-ci.yml``, ``ci/``, ``configs/``). What the test machine provides instead of a CI image (see
ci/README.md, "Running the templates as pipelines"): ``apt-get`` and ``pip`` stand-ins that print their
arguments (the tools are on this machine already; no root, no network), ``FASTML_INSTALL_DRY_RUN=1`` so
``ci/install_fastml.sh`` validates ``FASTML_PIP_SPEC=./fastml-src`` (a checkout in the repository, as a
submodule would be) and prints its pip command, and a ``fastml`` command that runs this checkout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "ci"
GITHUB_WORKFLOW_SCHEMA = REPO / "tests" / "fixtures" / "schemas" / "github-workflow.json"
#: where scripts/bootstrap.sh installs gitlab-ci-local (npm)
GITLAB_CI_LOCAL = REPO / ".tools" / "node_modules" / ".bin" / "gitlab-ci-local"
PIPELINE_TIMEOUT_S = 600

#: The smallest build of the pipeline: a 2-round xgboost BDT (10 trees of depth 2) as conifer VHDL, simulated
#: bit for bit by GHDL on 1 000 events, no yosys (about 40 s here, most of it GHDL's compile).
TINY_RECIPE = """\
name: ci_tiny
description: the smallest build of the CI pipeline test (tests/integration/test_ci_pipelines.py)
data:
  source: builtin:jets_hlf
  max_samples: 4000
model:
  kind: bdt
  library: xgboost
  n_estimators: 2
  max_depth: 2
firmware:
  backend: conifer
  conifer_backend: vhdl
  precision: "ap_fixed<16,6>"
  part: xcvu13p-flga2577-2-e
  clock_period_ns: 5.0
  yosys: false
  output_dir: hls_projects
verify:
  samples: 1000
budgets:
  max_mismatches: 0
  lut: {lut}
"""
#: conifer's estimate of the tiny BDT is ~940 LUT: 5000 passes with room, 100 fails by far
LUT_BUDGET_PASSING = 5000
LUT_BUDGET_FAILING = 100

# ------------------------------------------------------------------------------- GitHub Actions: the schema


def _yaml_12_loader() -> type[yaml.SafeLoader]:
    """A SafeLoader that reads booleans as YAML 1.2 (and GitHub) do: only true/false. PyYAML's YAML 1.1 reads
    the workflow's ``on:`` key as the boolean True, which no workflow schema accepts."""

    class Yaml12Loader(yaml.SafeLoader):
        pass

    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                       list("tTfF"))
    return Yaml12Loader


def load_workflow(text: str) -> dict:
    doc = yaml.load(text, Loader=_yaml_12_loader())  # a SafeLoader subclass: no arbitrary objects
    assert isinstance(doc, dict), "a workflow is a YAML mapping"
    return doc


def workflow_errors(doc: dict) -> list[str]:
    """Every violation of the GitHub Actions workflow schema, as 'path: message' lines."""
    schema = json.loads(GITHUB_WORKFLOW_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]


def test_github_template_matches_the_workflow_schema():
    doc = load_workflow((CI / "github-actions.yml").read_text())
    assert set(doc) >= {"on", "jobs"}  # `on` read as a string key, as GitHub reads it
    assert workflow_errors(doc) == []


@pytest.mark.parametrize("break_it", ["misspelled_key", "step_with_run_and_uses", "bad_trigger", "no_runs_on"])
def test_workflow_schema_check_rejects_broken_workflows(break_it):
    """The check can fail: each edit of the shipped template below is an invalid workflow."""
    doc = load_workflow((CI / "github-actions.yml").read_text())
    job = doc["jobs"]["fastml"]
    if break_it == "misspelled_key":
        job["step"] = job.pop("steps")
    elif break_it == "step_with_run_and_uses":
        job["steps"][0]["run"] = "echo both"  # steps[0] is `uses: actions/checkout`
    elif break_it == "bad_trigger":
        doc["on"]["pull_requests"] = None
    else:
        del job["runs-on"]
    assert workflow_errors(doc) != []


def test_yaml_12_loader_keeps_on_as_a_key():
    assert load_workflow("on: push\nx: yes\ny: true\n") == {"on": "push", "x": "yes", "y": True}


# ---------------------------------------------------------------------------------- GitLab: the pipeline


@dataclass(frozen=True)
class Pipeline:
    """One gitlab-ci-local run: its exit status, its log, each job's PASS/FAIL, and the project it ran in."""

    returncode: int
    log: str
    jobs: dict[str, str]
    project: Path

    def artifact(self, job: str, relative: str) -> Path:
        """A file ``job`` kept as an artifact (gitlab-ci-local stores them per job)."""
        return self.project / ".gitlab-ci-local" / "artifacts" / job / relative

    def job_log(self, job: str) -> str:
        return "\n".join(line for line in self.log.splitlines() if line.startswith(f"{job} "))


def gitlab_ci_local() -> str:
    """The gitlab-ci-local executable, or a skip that says why the pipeline test did not run."""
    found = os.environ.get("FASTML_GITLAB_CI_LOCAL") or (str(GITLAB_CI_LOCAL) if GITLAB_CI_LOCAL.is_file() else None)
    found = found or shutil.which("gitlab-ci-local")
    if found is None:
        pytest.skip("not run: gitlab-ci-local is not installed (scripts/bootstrap.sh installs it into .tools/ "
                    "where npm exists)")
    for tool, why in (("node", "gitlab-ci-local runs on Node.js; install Node.js and npm"),
                      ("git", "gitlab-ci-local reads the repository; install git"),
                      ("rsync", "gitlab-ci-local copies the checkout with it; scripts/bootstrap.sh installs it"),
                      ("ghdl", "the tiny recipe's VHDL is verified with GHDL; scripts/bootstrap.sh installs it")):
        if shutil.which(tool) is None:
            pytest.skip(f"not run: {tool} not found ({why})")
    return found


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def stand_ins(bin_dir: Path) -> Path:
    """What the CI image would hold: ``apt-get`` and ``pip`` that only print (this machine has the tools; the
    test has no root to spare and no network), and ``python`` / ``fastml`` that run this checkout."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in ("apt-get", "pip"):
        _executable(bin_dir / tool, f'#!/bin/sh\necho "{tool} (test stand-in): $*"\n')
    python = shlex.quote(sys.executable)
    _executable(bin_dir / "python", f'#!/bin/sh\nexec {python} "$@"\n')
    _executable(bin_dir / "fastml", f'#!/bin/sh\nexec {python} -m fastml "$@"\n')
    return bin_dir


def _git(project: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True, timeout=60)


def user_repository(project: Path, lut_budget: int) -> Path:
    """A git repository laid out as ci/README.md tells a user to: the template as ``.gitlab-ci.yml`` (byte for
    byte), the two scripts in ``ci/``, one recipe in ``configs/``, and fastml as a checkout (``fastml-src``)."""
    (project / "ci").mkdir(parents=True)
    (project / "configs").mkdir()
    shutil.copyfile(CI / "gitlab-ci.yml", project / ".gitlab-ci.yml")
    for script in ("check_all.sh", "install_fastml.sh"):
        shutil.copy2(CI / script, project / "ci" / script)
    (project / "configs" / "ci_tiny.yaml").write_text(TINY_RECIPE.format(lut=lut_budget))
    (project / "fastml-src").symlink_to(REPO, target_is_directory=True)  # a submodule would sit here
    _git(project, "init", "-q", "-b", "main")
    _git(project, "config", "user.name", "fastml test")
    _git(project, "config", "user.email", "fastml-test@example.invalid")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "a repository gated by fastml")
    return project


_JOB_RESULT = re.compile(r"^ (PASS|FAIL|WARN) +([\w.-]+)\s*$", re.MULTILINE)


def run_pipeline(executable: str, project: Path, bin_dir: Path, home: Path) -> Pipeline:
    """The whole pipeline of ``project``'s ``.gitlab-ci.yml``, every job on the shell executor, isolated."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
           "PYTHONPATH": str(REPO)}  # `python -m fastml` in a job imports this checkout
    command = [executable, "--force-shell-executor", "--shell-isolation", "--no-color", "--home", str(home),
               "--variable", "FASTML_PIP_SPEC=./fastml-src", "--variable", "FASTML_INSTALL_DRY_RUN=1"]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=PIPELINE_TIMEOUT_S)
    log = done.stdout + done.stderr
    jobs = {name: status for status, name in _JOB_RESULT.findall(log)}
    return Pipeline(done.returncode, log, jobs, project)


@pytest.fixture(scope="module")
def glci() -> str:
    return gitlab_ci_local()


def _pipeline(glci: str, tmp_path: Path, lut_budget: int) -> Pipeline:
    project = user_repository(tmp_path / "repo", lut_budget)
    return run_pipeline(glci, project, stand_ins(tmp_path / "bin"), tmp_path / "home")


def _junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    return root if root.tag == "testsuite" else root.find("testsuite")


@pytest.mark.slow
def test_gitlab_pipeline_builds_gates_and_keeps_artifacts(glci, tmp_path):
    pipeline = _pipeline(glci, tmp_path, LUT_BUDGET_PASSING)
    assert pipeline.returncode == 0, pipeline.log[-6000:]
    assert pipeline.jobs == {"fastml-build": "PASS", "fastml-check": "PASS"}, pipeline.log[-6000:]

    assert "json schema validated" in pipeline.log  # gitlab-ci-local checked the file against GitLab's CI schema
    # the template's own steps ran: the pinned-install check, the build loop, the gate
    build_log, check_log = pipeline.job_log("fastml-build"), pipeline.job_log("fastml-check")
    assert "python -m pip install ./fastml-src" in build_log  # install_fastml.sh accepted the checkout
    assert "=== building configs/ci_tiny.yaml" in build_log and "ci_tiny: conifer build ok" in build_log
    assert "check_all.sh: all 1 project(s) within budget" in check_log

    # fastml-build's artifacts: the report (JSON and Markdown) and the recipe, not the firmware
    report = json.loads(pipeline.artifact("fastml-build", "hls_projects/ci_tiny/report.json").read_text())
    assert report["name"] == "ci_tiny" and report["backend"] == "conifer"
    assert report["verification"]["rtl_sim"]["mismatches"] == 0
    assert report["verification"]["rtl_sim"]["samples"] >= 1000
    assert pipeline.artifact("fastml-build", "hls_projects/ci_tiny/report.md").read_text().strip()
    assert yaml.safe_load(pipeline.artifact("fastml-build", "hls_projects/ci_tiny/config.yaml").read_text())
    # the gate job saw the build only through those artifacts (each job runs in its own copy of the checkout)
    check_dir = pipeline.project / ".gitlab-ci-local" / "builds" / "fastml-check"
    assert (check_dir / "hls_projects" / "ci_tiny" / "report.json").is_file()
    assert not (check_dir / "hls_projects" / "ci_tiny" / "firmware").exists()

    # fastml-check's artifacts: JUnit XML (GitLab's test report), JSON and the Markdown summary
    suite = _junit(pipeline.artifact("fastml-check", "fastml-check/ci_tiny.junit.xml"))
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert {"lut", "bit_exact_mismatches"} <= set(cases), sorted(cases)
    assert int(suite.get("failures", "0")) == 0 and not list(suite.iter("failure"))
    result = json.loads(pipeline.artifact("fastml-check", "fastml-check/ci_tiny.json").read_text())
    assert result["name"] == "ci_tiny" and result["passed"] is True
    assert {row["metric"]: row["status"] for row in result["rows"]} == {"lut": "pass", "bit_exact_mismatches": "pass"}
    summary = pipeline.artifact("fastml-check", "fastml-check/summary.md").read_text()
    assert "`ci_tiny` — ✅ passed" in summary


@pytest.mark.slow
def test_gitlab_pipeline_fails_at_the_gate_job_when_a_budget_fails(glci, tmp_path):
    pipeline = _pipeline(glci, tmp_path, LUT_BUDGET_FAILING)
    assert pipeline.returncode != 0, pipeline.log[-6000:]
    # the build succeeds; the gate is what stops the merge
    assert pipeline.jobs == {"fastml-build": "PASS", "fastml-check": "FAIL"}, pipeline.log[-6000:]
    check_log = pipeline.job_log("fastml-check")
    assert "check_all.sh: 1 of 1 project(s) failed their budgets: ci_tiny" in check_log
    # the results are kept although the job failed (artifacts: when: always), and name the failed budget
    suite = _junit(pipeline.artifact("fastml-check", "fastml-check/ci_tiny.junit.xml"))
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert failed == {"lut"}, failed
    result = json.loads(pipeline.artifact("fastml-check", "fastml-check/ci_tiny.json").read_text())
    assert result["passed"] is False and [row["metric"] for row in result["rows"] if row["failed"]] == ["lut"]
    summary = pipeline.artifact("fastml-check", "fastml-check/summary.md").read_text()
    assert "`ci_tiny` — ❌ failed" in summary
