"""The name this project is installed under, and a guard against the unrelated package called ``fastml``.

The name ``fastml`` on PyPI belongs to an unrelated scikit-learn helper (fastML 1.0, 2020, top-level module
``fastML``). This project is distributed as ``fastml-trigger`` (free on PyPI when chosen; see ci/README.md)
and keeps the import name ``fastml``. On Linux the two cannot collide (``fastML/`` and ``fastml/`` are
different folders), but their metadata can be confused: ``importlib.metadata.version("fastml")`` answers
for the other project. So fastml reads its own version under ``DISTRIBUTION``, never ``"fastml"``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

#: Distribution (pip) name of this project.
DISTRIBUTION = "fastml-trigger"
#: The unrelated PyPI project that owns the name ``fastml``.
FOREIGN_DISTRIBUTION = "fastml"


def installed_version() -> str | None:
    """Version of the installed ``fastml-trigger`` distribution, or ``None`` when run from a bare checkout."""
    try:
        return distribution(DISTRIBUTION).version
    except PackageNotFoundError:
        return None


def foreign_package_installed() -> str | None:
    """Version of the unrelated ``fastml`` distribution if it is installed in this environment, else ``None``.

    The metadata of an editable install of an older checkout of this project (named ``fastml`` before the
    rename) is recognised by its summary and not reported.
    """
    try:
        dist = distribution(FOREIGN_DISTRIBUTION)
    except PackageNotFoundError:
        return None
    if "FPGA" in (dist.metadata.get("Summary") or ""):
        return None
    return dist.version


__all__ = ["DISTRIBUTION", "FOREIGN_DISTRIBUTION", "foreign_package_installed", "installed_version"]
