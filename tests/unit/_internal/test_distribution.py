"""A distribution name that is ours: pyproject, CI templates and install hints never install the bare
``fastml`` (an unrelated PyPI project), and ``ci/install_fastml.sh`` accepts only pinned sources."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fastml._internal.distribution import DISTRIBUTION

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "ci" / "install_fastml.sh"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _install(spec: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run([bash, str(SCRIPT), spec], capture_output=True, text=True, timeout=30, cwd=cwd,
                          env={**os.environ, "FASTML_INSTALL_DRY_RUN": "1"})


def test_pyproject_names_our_distribution():
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^name = "([^"]+)"$', text, re.M).group(1) == DISTRIBUTION != "fastml"


@pytest.mark.parametrize(("spec", "command"), [
    (".", "python -m pip install ."),
    (".[generate]", "python -m pip install .[generate]"),
    ("fastml-trigger==0.1.0", "python -m pip install fastml-trigger==0.1.0"),
    ("fastml-trigger[generate]==0.1.0", "python -m pip install fastml-trigger[generate]==0.1.0"),
    (f"git+https://gitlab.example.org/l1/fastml.git@{COMMIT}",
     f"python -m pip install fastml-trigger @ git+https://gitlab.example.org/l1/fastml.git@{COMMIT}"),
])
def test_pinned_sources_are_installed(spec: str, command: str):
    done = _install(spec)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == command


@pytest.mark.parametrize(("spec", "why"), [
    ("", "is not set"),
    ("fastml", "unrelated"),
    ("fastml==1.0", "unrelated"),
    ("fastml-trigger", "not a pinned source"),
    ("fastml-trigger>=0.1", "not a pinned source"),
    ("git+https://github.com/someone/fastml.git@main", "not a pinned source"),
    ("git+https://github.com/someone/fastml.git", "not a pinned source"),
    ("/", "not a folder with a pyproject.toml"),
    ("dist/fastml_trigger-0.1.0-py3-none-any.whl", "does not exist"),
])
def test_unpinned_or_foreign_sources_are_refused(spec: str, why: str):
    done = _install(spec)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0], done.stderr


def test_a_checkout_of_another_project_is_refused(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "fastml"\n')
    done = _install(".", cwd=tmp_path)
    assert done.returncode == 2 and "does not name fastml-trigger" in done.stderr


@pytest.mark.parametrize("template", ["gitlab-ci.yml", "github-actions.yml"])
def test_templates_install_through_the_guard(template: str):
    text = (REPO / "ci" / template).read_text()
    assert 'bash ci/install_fastml.sh "$FASTML_PIP_SPEC"' in text
    assert 'pip install "$FASTML_PIP_SPEC"' not in text
    # no default that someone else can own: the variable has no package-name default
    assert not re.search(r"FASTML_PIP_SPEC:\s*\"?fastml", text)
    assert "|| 'fastml'" not in text


def test_no_install_hint_names_the_foreign_package():
    """Every ``pip install ...fastml...`` in docs, messages and templates names fastml-trigger or a checkout."""
    files = [REPO / "README.md", *(REPO / "ci").glob("*"), *(REPO / "fastml").rglob("*.py"),
             *(REPO / "scripts").glob("*"), *(REPO / "notebooks").glob("*.ipynb")]
    bad = []
    for f in files:
        if not f.is_file():
            continue
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1):
            for m in re.finditer(r"pip install\s+(?:-[\w-]+\s+)*['\"]?(fastml[\w\[\],.=<>-]*)", line):
                if not m.group(1).startswith(DISTRIBUTION):
                    bad.append(f"{f.relative_to(REPO)}:{n}: {line.strip()}")
    assert not bad, "\n".join(bad)
