"""fastml 0.1's import paths keep working for one release: the same module object, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

from fastml._internal.compat import MOVED_MODULES


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_module_path_is_the_new_module(old: str) -> None:
    new = importlib.import_module(MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is new


def test_moved_names_are_still_reachable_from_their_old_module() -> None:
    from fastml import diagnose, estimate, verification
    from fastml._internal import da4ml, yosys
    from fastml.backends.rtl import estimate as rtl_estimate
    from fastml.metrics import accuracy
    from fastml.verification import layers

    assert estimate.trace_keras is da4ml.trace_keras and estimate.yosys_resources is yosys.yosys_resources
    assert estimate.rtl_yosys_resources is rtl_estimate.rtl_yosys_resources
    assert diagnose.to_grid is layers.to_grid and verification.accuracy is accuracy
    with pytest.raises(AttributeError):
        _ = estimate.no_such_name


def test_the_notebook_api_names_are_the_stage_functions() -> None:
    """``fastml.verify(project, x)`` (README, notebooks) is the verification stage's function, not a module."""
    import fastml
    from fastml import verify
    from fastml.verification import verify_project

    assert fastml.verify is verify is verify_project
    assert fastml.train.__module__ == "fastml.pipeline" and fastml.build_model.__module__ == "fastml.pipeline"
