"""``fastml data fetch SOURCE``: download a published data set into the cache the loaders read.

Guarantees, for every source:

- the file appears in the cache only complete and verified: it is downloaded to ``<file>.part``, its
  checksum compared with the one the publisher gives (OpenML: the data set's ``md5_checksum``; Zenodo:
  the record's ``md5:`` checksum), then moved into place with one atomic rename;
- an interrupted download resumes from its ``.part`` file (HTTP ``Range``); if the server does not
  resume, or the resumed file fails the checksum, it restarts once from zero; a file that still fails is
  deleted and reported;
- with no network (or a server that cannot be reached) it fails with one line saying which file to
  download by hand and where to put it.

Sources: ``openml:42468`` (the hls4ml jet high-level features, read by ``data.source: openml:42468``)
and ``zenodo:<record>/<file>`` (e.g. ``zenodo:3602260/hls4ml_LHCjet_30p_val.tar.gz``, the jet particle
files). API hosts can be redirected with ``FASTML_OPENML_API`` / ``FASTML_ZENODO_API`` (mirrors, tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .published import OPENML_ID, OPENML_NAME, default_cache_dir

#: Seconds without data before a connection counts as lost.
TIMEOUT_S = 60
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: where from, where to, and the checksum the publisher gives for it."""

    url: str
    dest: Path
    algorithm: str  # hashlib name, e.g. "md5"
    checksum: str
    page: str  # a web page a person can download it from by hand


def _data_root() -> Path:
    """``$FASTML_DATA_DIR`` or ``~/.cache/fastml``: the root the loaders read from."""
    return default_cache_dir().parent


def _get_json(url: str, what: str, by_hand: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return json.loads(resp.read().decode("utf-8"))
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise DataError(f"cannot reach {url} for {what} ({_reason(err)}); {by_hand}") from None


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or getattr(err, "code", None) or err
    return " ".join(str(reason).split())[:160] or type(err).__name__


def resolve(source: str, cache_root: Path | None = None) -> RemoteFile:
    """The file behind a ``fastml data fetch`` source (asks the publisher's API for URL and checksum)."""
    root = cache_root or _data_root()
    if source == f"openml:{OPENML_ID}":
        dest = root / "openml" / f"{OPENML_NAME}.arff"
        page = f"https://www.openml.org/d/{OPENML_ID}"
        by_hand = f"with no network, download {OPENML_NAME}.arff from {page} and place it at {dest}"
        api = os.environ.get("FASTML_OPENML_API", "https://api.openml.org").rstrip("/")
        doc = _get_json(f"{api}/api/v1/json/data/{OPENML_ID}", f"OpenML {OPENML_ID}", by_hand)
        try:
            desc = doc["data_set_description"]
            return RemoteFile(str(desc["url"]), dest, "md5", str(desc["md5_checksum"]).lower(), page)
        except (KeyError, TypeError):
            raise DataError(f"OpenML's description of {OPENML_ID} has no url/md5_checksum; {by_hand}") from None
    if source.startswith("openml:"):
        raise DataError(f"{source}: only openml:{OPENML_ID} (the 5-class jet benchmark) can be fetched")
    if source.startswith("zenodo:") and source.count("/") == 1:
        record, name = source.removeprefix("zenodo:").split("/")
        if not record.isdigit() or not name or name.startswith("."):
            raise DataError(f"{source}: expected zenodo:<record number>/<file name>")
        dest = root / "zenodo" / record / name
        page = f"https://zenodo.org/records/{record}"
        by_hand = f"with no network, download {name} from {page} and place it at {dest}"
        api = os.environ.get("FASTML_ZENODO_API", "https://zenodo.org").rstrip("/")
        doc = _get_json(f"{api}/api/records/{record}", f"Zenodo record {record}", by_hand)
        for entry in doc.get("files", []) if isinstance(doc, dict) else []:
            if entry.get("key") == name:
                algorithm, _, checksum = str(entry.get("checksum", "")).partition(":")
                url = (entry.get("links") or {}).get("self") or f"{api}/records/{record}/files/{name}"
                if algorithm not in hashlib.algorithms_available or not checksum:
                    raise DataError(f"{source}: Zenodo gives no usable checksum for {name}; {by_hand}")
                return RemoteFile(url, dest, algorithm, checksum.lower(), page)
        raise DataError(f"{source}: Zenodo record {record} has no file {name!r}")
    raise DataError(f"{source}: expected openml:{OPENML_ID} or zenodo:<record>/<file>")


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_to_part(remote: RemoteFile, part: Path, log: Callable[[str], None]) -> None:
    """Append the rest of ``remote`` to ``part`` (from its current size), or rewrite it if the server
    does not resume. Network failures raise ``DataError`` and keep ``part`` for the next attempt."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    by_hand = f"download {remote.url} (see {remote.page}) and place it at {remote.dest}"
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            resumed = have > 0 and resp.status == 206
            if have and not resumed:
                log(f"the server does not resume downloads: restarting {remote.dest.name} from zero")
            elif resumed:
                log(f"resuming {remote.dest.name} at byte {have}")
            with part.open("ab" if resumed else "wb") as out:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # asked past the end: the .part is complete (or longer than the file)
            return
        raise DataError(f"cannot download {remote.url} (HTTP {err.code}); {by_hand}") from None
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"download of {remote.url} interrupted ({_reason(err)}); run 'fastml data fetch' again "
                        f"to resume, or {by_hand}") from None


def fetch(remote: RemoteFile, log: Callable[[str], None] = print) -> Path:
    """Download ``remote`` into place (see the module docstring); returns its path."""
    dest = remote.dest
    if dest.is_file() and _digest(dest, remote.algorithm) == remote.checksum:
        log(f"{dest}: already present, {remote.algorithm} checksum matches")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in (1, 2):
        _download_to_part(remote, part, log)
        got = _digest(part, remote.algorithm)
        if got == remote.checksum:
            os.replace(part, dest)  # atomic: the loaders never see a partial file
            log(f"{dest}: downloaded, {remote.algorithm} {got} verified")
            return dest
        part.unlink()
        if attempt == 1:
            log(f"{remote.algorithm} checksum mismatch after download: restarting {dest.name} from zero")
    raise DataError(f"{remote.url}: {remote.algorithm} checksum {got} twice, expected {remote.checksum} "
                    f"(nothing written to {dest}); download it from {remote.page} and check it by hand")


__all__ = ["RemoteFile", "fetch", "resolve"]
