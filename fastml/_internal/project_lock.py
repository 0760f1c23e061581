"""One build per project at a time, and no litter from builds that were killed.

``project_lock(project_dir)`` holds an exclusive ``flock`` on ``<output_dir>/.<name>.lock`` for the
whole build. The kernel drops a ``flock`` when its process dies, even by SIGKILL, so a lock file left by
a dead build is never mistaken for a live one (the stale-lock check is the lock itself, race-free); the
PID written into the file is only there to name the holder in the error a second build gets.

Once the lock is held, nothing else can be writing ``.<name>.tmp-*`` (staging) or ``.<name>.old-*``
(the previous project during the final swap) folders, so any found are leftovers of killed builds:
staging folders are removed, and an ``.old-*`` folder is put back as the project when the kill came
between the two renames of the swap (the project folder is then missing).
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BuildLockedError


def lock_path(project_dir: Path) -> Path:
    """``<output_dir>/.<name>.lock``: next to the project, not in it (the project folder is swapped whole)."""
    return project_dir.parent / f".{project_dir.name}.lock"


def _holder(path: Path) -> str:
    """Who holds the lock, from what it wrote into the file (best effort: it may be mid-write)."""
    try:
        info = json.loads(path.read_text())
        return f"PID {info['pid']} on {info.get('host', '?')}, started {info.get('started', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "PID unknown (lock file being written)"


@contextmanager
def project_lock(project_dir: Path, log: Callable[[str], None] = print) -> Iterator[Path]:
    """Hold the build lock of ``project_dir`` for the block; yields the lock file's path.

    Raises ``BuildLockedError`` (one line naming the holder's PID) if another live process holds it.
    On entry, removes staging folders of killed builds and restores a project left half-swapped.
    """
    project_dir = Path(project_dir)
    project_dir.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(project_dir)
    fd = _acquire(path, project_dir)
    try:
        previous = _holder(path) if os.fstat(fd).st_size else None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        if previous is not None:  # a build that ended normally removes its lock file: this one was killed
            log(f"note: the previous build of '{project_dir.name}' ({previous}) did not finish; cleaning up")
        recover_interrupted(project_dir, log)
        try:
            yield path
        finally:
            # unlink before unlocking: a waiting build then creates a fresh file instead of locking this one
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _acquire(path: Path, project_dir: Path) -> int:
    """Open and ``flock`` the lock file; the descriptor of a file that is still at ``path``."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            raise BuildLockedError(
                f"{project_dir}: another build of '{project_dir.name}' is running ({_holder(path)}); "
                f"wait for it to finish or stop it (lock: {path})") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder unlinked the file between our open and flock: lock the new one


def _leftovers(project_dir: Path, kind: str) -> list[Path]:
    """``.<name>.tmp-XXXXXXXX`` (mkdtemp) or ``.<name>.old-<pid>`` folders of exactly this project."""
    suffix = r"[A-Za-z0-9_]{8}" if kind == "tmp" else r"\d+"
    pattern = re.compile(rf"^\.{re.escape(project_dir.name)}\.{kind}-{suffix}$")
    if not project_dir.parent.is_dir():
        return []
    return sorted(p for p in project_dir.parent.iterdir() if pattern.match(p.name) and p.is_dir())


def recover_interrupted(project_dir: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Clean up after killed builds of ``project_dir``; call only while holding its lock.

    Returns the folders removed. A killed build's staging folders are removed (a complete project was
    never in one: the swap into place is the last step). If the project folder is missing but a
    ``.old-*`` backup exists, the kill came mid-swap and the backup (the last good project) is restored.
    """
    removed: list[Path] = []
    olds = _leftovers(project_dir, "old")
    if olds and not project_dir.exists():
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        os.replace(newest, project_dir)
        log(f"restored {project_dir} from {newest.name} (a build was killed while swapping it in)")
        olds.remove(newest)
    for stale in [*_leftovers(project_dir, "tmp"), *olds]:
        shutil.rmtree(stale, ignore_errors=True)
        log(f"removed {stale} (left by an interrupted build)")
        removed.append(stale)
    return removed


__all__ = ["BuildLockedError", "lock_path", "project_lock", "recover_interrupted"]
