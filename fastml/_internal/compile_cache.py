"""The on-disk cache of compiled simulation libraries (hls4ml C-simulations, compiled da4ml emulators),
keyed by a hash of what was compiled and how: a second build of the same firmware loads in milliseconds.

``FASTML_CSIM_CACHE`` names the folder (default ``~/.cache/fastml/csim``), or ``off`` to compile every time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

OFF_VALUES = {"0", "off", "false", "no"}

CACHE_ENV = "FASTML_CSIM_CACHE"


#: Cache entries kept (least recently used beyond this are removed after a store); a library is ~1-4 MB.
MAX_ENTRIES = 64


def user_cache_folder(env: str, name: str) -> Path | None:
    """The folder the environment variable ``env`` names, ``None`` when it says off, else
    ``$XDG_CACHE_HOME/fastml/<name>`` (``~/.cache/fastml/<name>``)."""
    value = os.environ.get(env, "").strip()
    if value.lower() in OFF_VALUES:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "fastml" / name


def cache_root() -> Path | None:
    """The C-simulation cache folder, or ``None`` when ``FASTML_CSIM_CACHE`` disables it."""
    return user_cache_folder(CACHE_ENV, "csim")


def prune(root: Path, keep: int) -> None:
    """Remove the least recently used entries beyond ``keep`` (an entry in use elsewhere was copied out)."""
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(entries) <= keep:
        return
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def store(work: Path, entry: Path, meta: dict[str, Any]) -> bool:
    """Move the finished build folder ``work`` into the cache as ``entry`` with its ``meta.json``, atomically
    (readers see a complete entry or none), then prune the cache. False when another build stored the same key
    first: its library is byte-for-byte equivalent, and ``work`` is left for the caller to remove."""
    (work / "meta.json").write_text(json.dumps({**meta, "created": time.time()}) + "\n")
    try:
        os.rename(work, entry)
    except OSError:
        return False
    prune(entry.parent, MAX_ENTRIES)
    return True
