"""Reproducibility: ``fastml build --quick`` twice with the same recipe and seeds gives the same report
figures and byte-identical firmware sources. One extra quick build, compared with the shared session build."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: Generated sources and weights (compiled objects, logs and tool files holding absolute paths are not sources).
SOURCE_SUFFIXES = {".cpp", ".h", ".hpp", ".cc", ".v", ".sv", ".vhd", ".txt", ".json", ".tcl"}


def _sources(project: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every firmware source, with the project's own path written as <project>."""
    out = {}
    for f in sorted((project / "firmware").rglob("*")):
        if f.is_file() and f.suffix in SOURCE_SUFFIXES:
            data = f.read_bytes().replace(str(project.resolve()).encode(), b"<project>")
            out[str(f.relative_to(project))] = hashlib.sha256(data).hexdigest()
    return out


def _figures(report) -> dict:
    """What a build found out, without what differs by design (timestamps, wall times, paths, config hash:
    the output folder is part of the recipe; whether the C-simulation library came from the compile cache)."""
    doc = report.model_dump(mode="json")
    for key in ("created", "timings_s", "config_path", "config_hash", "versions"):
        doc.pop(key, None)
    # csim_cache: the second build finds the first one's library in the compile cache (hit vs miss by design)
    doc["firmware"] = {k: v for k, v in doc["firmware"].items() if k not in ("path", "csim_cache")}
    for level in doc["verification"].values():
        level.pop("wall_s", None)
    return doc


@pytest.mark.slow
def test_quick_build_twice_gives_identical_figures_and_sources(quick_jet_build, tmp_path):
    from fastml.cli import main
    from fastml.report import load_report

    first_dir, first = quick_jet_build
    rc = main(["build", str(REPO / "configs" / "jet_tagger.yaml"), "--quick", "--output-dir", str(tmp_path),
               "--no-progress"])
    assert rc == 0
    second_dir = tmp_path / "jet_tagger"
    second = load_report(second_dir)
    assert _figures(second) == _figures(first)
    first_sources, second_sources = _sources(first_dir), _sources(second_dir)
    assert len(first_sources) > 3  # the model's C++ and weights are there to compare
    assert second_sources == first_sources
    assert (first_dir / "model" / "verify_inputs.npz").read_bytes() == (second_dir / "model" / "verify_inputs.npz"
                                                                         ).read_bytes()
