"""Dependencies: the suite's interpreter has no broken requirements (``pip check``), and ``pyproject.toml``'s
bounds are no looser than what the pinned packages themselves require (``keras`` as HGQ2 0.2 asks).

``pip check`` reads the metadata of the *installed* fastml, which is written when it is installed; the bound check
reads the working tree's ``pyproject.toml``, so a loosened bound fails here before anyone reinstalls."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _our_requirements() -> dict[str, Requirement]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: tomllib is 3.11's; tomli is its backport
        tomllib = pytest.importorskip("tomli", reason="not run: Python 3.10 without tomli cannot read pyproject.toml")
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    reqs = [Requirement(d) for d in deps]
    return {r.name.lower(): r for r in reqs}


def _lower_bound(req: Requirement) -> Version | None:
    """The highest ``>=``/``==``/``~=`` version of ``req``'s specifier (None: no lower bound)."""
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    return max(bounds, default=None)


def test_pip_check_is_clean() -> None:
    run = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"pip check in {sys.executable}:\n{run.stdout}{run.stderr}"
    assert "No broken requirements found" in run.stdout, run.stdout


@pytest.mark.parametrize("pinned", ["hgq2"])
def test_our_lower_bounds_cover_what_pinned_packages_require(pinned: str) -> None:
    ours = _our_requirements()
    try:
        theirs = [Requirement(r) for r in requires(pinned) or []]
    except PackageNotFoundError:
        pytest.fail(f"{pinned} is a dependency of fastml and is not installed in {sys.executable}")
    checked = 0
    for req in theirs:
        if req.marker is not None or req.name.lower() not in ours:  # extras ('test', 'docs') are not ours
            continue
        need, have = _lower_bound(req), _lower_bound(ours[req.name.lower()])
        if need is None:
            continue
        checked += 1
        assert have is not None and have >= need, (
            f"pyproject.toml asks {ours[req.name.lower()]}, {pinned} requires {req}: raise the lower bound")
    assert checked >= 1  # keras at least: the comparison ran


def test_test_module_names_are_unique() -> None:
    """tests/ has no __init__.py files, so pytest imports each test module by its base name: two files of one name
    in different folders make the second a collection error for the whole suite."""
    from collections import Counter

    tests = Path(__file__).resolve().parents[1]
    names = Counter(p.name for p in tests.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
