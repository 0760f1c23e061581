"""The notebooks run top to bottom (quick mode), save their figures, and are committed without outputs.

Each notebook runs in its own temporary working directory with ``FASTML_NOTEBOOK_QUICK=1`` on the
``python3`` kernel of this interpreter's environment; a cell that raises fails the test. Notebooks 01 and 07
reuse the run's quick build of their recipe through ``FASTML_NOTEBOOK_CACHE`` instead of building their own.
The figures of every notebook are kept under pytest's temporary folder (path printed with ``-s``).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT_S = 300


def test_the_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_resource_tradeoff.ipynb", "03_bdt.ipynb",
                                           "04_rtl_and_budgets.ipynb", "05_bring_your_own_model.ipynb",
                                           "06_scan.ipynb", "07_anomaly_detection.ipynb",
                                           "08_particle_taggers.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} cell {i} carries outputs"


@pytest.fixture(scope="session")
def figures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("notebook_figures")


#: notebook -> the shipped recipes whose quick build it reuses from FASTML_NOTEBOOK_CACHE (a folder of projects):
#: the run's shared builds (tests/conftest.py), instead of building them again.
REUSE_QUICK_BUILD = {"01_quickstart": ["jet_tagger.yaml"], "07_anomaly_detection": ["anomaly_ae.yaml"]}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, request: pytest.FixtureRequest, figures_dir: Path, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    figures = figures_dir / path.stem
    monkeypatch.setenv("FASTML_NOTEBOOK_QUICK", "1")
    if path.stem in REUSE_QUICK_BUILD:  # only these read it; the others need not wait for a build
        cache = tmp_path / "cache"
        cache.mkdir()
        for recipe in REUSE_QUICK_BUILD[path.stem]:
            project = (request.getfixturevalue("quick_jet_build")[0] if recipe == "jet_tagger.yaml"
                       else request.getfixturevalue("quick_recipe_build")(recipe))
            (cache / project.name).symlink_to(project, target_is_directory=True)
        monkeypatch.setenv("FASTML_NOTEBOOK_CACHE", str(cache))
    monkeypatch.setenv("FASTML_NOTEBOOK_FIGURES", str(figures))
    monkeypatch.chdir(tmp_path)
    nb = nbformat.read(path, as_version=4)
    # The kernel must be this environment's Python, not whatever "python3" means elsewhere.
    nb.cells.insert(0, nbformat.v4.new_code_cell(
        f"import sys\nassert sys.prefix == {sys.prefix!r}, f'kernel runs {{sys.executable}}'"))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # the kernel colours its tracebacks
        pytest.fail(f"{path.name}: a cell raised:\n{plain}")
    wall = time.perf_counter() - t0
    pngs = sorted(figures.glob("*.png"))
    print(f"{path.name}: {wall:.0f} s, figures: {[p.name for p in pngs]} in {figures}")
    assert pngs, f"{path.name} saved no figure"
    for png in pngs:
        assert png.stat().st_size > 2000 and png.read_bytes()[:4] == b"\x89PNG"
    displayed = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert displayed, f"{path.name} displayed no figure"
