"""``fastml data fetch`` against a real HTTP server on 127.0.0.1 started here (never a remote address):
checksum verified, atomic, resumes an interrupted download, restarts when it cannot resume, and with no
network fails in one line naming the file and where to put it."""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fastml.data.fetch import fetch, resolve
from fastml.data.table import JET_CLASSES, JET_FEATURES
from fastml.errors import DataError


def _arff(n: int = 40) -> bytes:
    rng = np.random.default_rng(3)
    lines = ["@relation hls4ml_lhc_jets_hlf", *(f"@attribute {f} numeric" for f in JET_FEATURES),
             "@attribute class {g,q,w,z,t}", "@data"]
    for i in range(n):
        lines.append(",".join(f"{v:.5f}" for v in rng.normal(size=len(JET_FEATURES))) + f",{'gqwzt'[i % 5]}")
    return ("\n".join(lines) + "\n").encode()


class _Server:
    """OpenML- and Zenodo-shaped endpoints for one file; ``ranges`` may be switched off; requests are logged."""

    def __init__(self, content: bytes) -> None:
        self.content = content
        self.md5 = hashlib.md5(content).hexdigest()
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # the http.server API names it
                outer.requests.append((self.path, self.headers.get("Range")))
                base = f"http://127.0.0.1:{outer.port}"
                if self.path == "/api/v1/json/data/42468":
                    self._send(200, json.dumps({"data_set_description": {
                        "url": f"{base}/data/v1/download/1/hls4ml_lhc_jets_hlf.arff",
                        "md5_checksum": outer.md5}}).encode())
                elif self.path == "/api/records/3602260":
                    self._send(200, json.dumps({"files": [{"key": "small.h5", "checksum": f"md5:{outer.md5}",
                                                           "links": {"self": f"{base}/files/small.h5"}}]}).encode())
                elif self.path.startswith(("/data/v1/download/", "/files/")):
                    rng = self.headers.get("Range")
                    if rng and outer.ranges:
                        start = int(rng.removeprefix("bytes=").split("-")[0])
                        if start >= len(outer.content):
                            self._send(416, b"")
                        else:
                            self._send(206, outer.content[start:])
                    else:
                        self._send(200, outer.content)
                else:
                    self._send(404, b"")

            def _send(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path) -> Iterator[_Server]:
    srv = _Server(_arff())
    monkeypatch.setenv("FASTML_OPENML_API", srv.url)
    monkeypatch.setenv("FASTML_ZENODO_API", srv.url)
    monkeypatch.setenv("FASTML_DATA_DIR", str(tmp_path / "cache"))
    yield srv
    srv.close()


def test_fetch_puts_a_verified_file_where_the_loader_reads_it(server, tmp_path, capsys):
    from fastml.cli import main
    from fastml.data import read_source

    assert main(["data", "fetch", "openml:42468"]) == 0
    dest = tmp_path / "cache" / "openml" / "hls4ml_lhc_jets_hlf.arff"
    assert capsys.readouterr().out.strip() == str(dest)
    assert dest.read_bytes() == server.content and not list(dest.parent.glob("*.part"))
    table = read_source("openml:42468")
    assert table.x.shape == (40, len(JET_FEATURES)) and table.class_names == JET_CLASSES
    n = len(server.requests)
    assert main(["data", "fetch", "openml:42468"]) == 0  # already there: checksum only, no download
    assert [p for p, _ in server.requests[n:]] == ["/api/v1/json/data/42468"]


def test_interrupted_download_resumes(server):
    remote = resolve("openml:42468")
    part = remote.dest.with_name(remote.dest.name + ".part")
    part.parent.mkdir(parents=True)
    half = len(server.content) // 2
    part.write_bytes(server.content[:half])
    logs: list[str] = []
    assert fetch(remote, log=logs.append).read_bytes() == server.content
    assert server.requests[-1][1] == f"bytes={half}-" and any("resuming" in m for m in logs)


def test_download_restarts_when_the_server_cannot_resume_or_the_part_is_corrupt(server):
    remote = resolve("openml:42468")
    part = remote.dest.with_name(remote.dest.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage that is not the start of the file")
    logs: list[str] = []
    assert fetch(remote, log=logs.append).read_bytes() == server.content  # resumed, mismatched, restarted
    assert any("restarting" in m for m in logs)
    remote.dest.unlink()
    server.ranges = False
    part.write_bytes(server.content[:10])
    logs.clear()
    assert fetch(remote, log=logs.append).read_bytes() == server.content
    assert any("does not resume" in m for m in logs)


def test_a_file_that_never_matches_its_checksum_is_not_kept(server):
    remote = resolve("zenodo:3602260/small.h5")
    server.content = server.content + b"tampered"
    with pytest.raises(DataError) as info:
        fetch(remote, log=lambda m: None)
    assert "checksum" in str(info.value) and "\n" not in str(info.value)
    assert not remote.dest.exists() and not list(remote.dest.parent.glob("*"))


def test_no_network_says_which_file_to_place_where(monkeypatch, tmp_path, capsys):
    from fastml.cli import main

    with socket.socket() as s:  # a port nothing listens on: connection refused, like a machine offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("FASTML_OPENML_API", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("FASTML_DATA_DIR", str(tmp_path / "cache"))
    assert main(["data", "fetch", "openml:42468"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    dest = tmp_path / "cache" / "openml" / "hls4ml_lhc_jets_hlf.arff"
    assert len(err) == 1 and "download hls4ml_lhc_jets_hlf.arff" in err[0] and f"place it at {dest}" in err[0]


@pytest.mark.parametrize("source", ["openml:1", "zenodo:abc/x.h5", "zenodo:1/../x", "http://example.org/x"])
def test_unknown_sources_are_one_line_errors(source):
    with pytest.raises(DataError):
        resolve(source, Path("/nonexistent"))
