"""``fastml export``: a built project as one deterministic bundle for the firmware engineer who integrates it.

The bundle (``<name>/`` inside a ``.tar.gz``) holds what the backend hands over (``Backend.export``: HDL,
testbench and vectors), the project's ``report.json`` and ``report.html``, a ``README.md`` with the interface
table, latency, II, clock, part, the resource estimates by source and the simulator commands, and
``SHA256SUMS`` of every other file (``sha256sum -c SHA256SUMS`` in the extracted folder). The same project
exports byte-identical bundles: entries sorted, mtimes 0, uid/gid 0 without names, fixed modes,
gzip header without name or time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

from .backends import ExportContents, get_backend
from .errors import FastmlError
from .report import Report, load_report

README = "README.md"
SUMS = "SHA256SUMS"


def _resources_lines(report: Report) -> list[str]:
    if not report.resources:
        return ["No resource estimate in report.json (`fastml estimate` makes one)."]
    lines = ["| source | LUT | FF | DSP | BRAM | note |", "|---|---|---|---|---|---|"]
    for source, r in report.resources.items():
        # the cost model says what it is in ``note``; yosys names its version and target family
        extra = r.model_dump()
        note = str(extra.get("note") or " ".join(str(extra[k]) for k in ("tool", "family") if extra.get(k)))
        note = note.replace("|", "/")
        lines.append(f"| {source} | {r.lut} | {r.ff} | {r.dsp} | {r.bram} | {note} |")
    return lines


def _verification_lines(report: Report) -> list[str]:
    lines = []
    for level, v in report.verification.items():
        lines.append(f"- `{level}`: {v.mismatches} differing output elements on {v.samples} events "
                     f"(reference: {v.reference})")
    for check, state in sorted(report.checks.items()):
        if check.startswith("bit_exact_") and state != "pass":
            lines.append(f"- `{check}`: {state}")
    return lines or ["- nothing in report.json"]


def readme(report: Report, contents: ExportContents) -> str:
    """The bundle's README.md."""
    lat = report.latency
    versions = ", ".join(f"{tool} {report.versions.get(tool, '?')}" for tool in ("fastml", *contents.tools))
    lines = [
        f"# {report.name}: firmware for integration",
        "",
        f"Exported by fastml from a `{report.backend}` build ({versions}; config hash `{report.config_hash}`, built "
        f"{report.created}, status `{report.status}`).",
        "",
        "## Interface",
        "",
        *contents.interface,
        "",
        "## Latency and resources (report.json)",
        "",
        f"Latency {lat.cycles} clocks, {lat.ns} ns, II {lat.ii} (source: {lat.source}).",
        "",
        *_resources_lines(report),
        "",
        "## Verification in the build",
        "",
        *_verification_lines(report),
        "",
        "## Simulate",
        "",
        *contents.simulate,
        "",
        "## Files",
        "",
        f"`{SUMS}` lists the SHA-256 of every other file: `sha256sum -c {SUMS}` in this folder.",
        "",
    ]
    return "\n".join(lines)


def _bundle_files(project_dir: Path) -> tuple[str, dict[str, bytes], tuple[str, ...]]:
    """The bundle's top folder name, its files (path -> bytes) and the folders it holds even when empty."""
    report = load_report(project_dir)
    contents = get_backend(report.backend).export(project_dir)
    files = {path: src.read_bytes() for path, src in contents.files.items()}
    files["report.json"] = (project_dir / "report.json").read_bytes()
    if (project_dir / "report.html").is_file():  # the page a reviewer opens (self-contained: no network)
        files["report.html"] = (project_dir / "report.html").read_bytes()
    files[README] = readme(report, contents).encode()
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {path}\n" for path, data in sorted(files.items()))
    files[SUMS] = sums.encode()
    return report.name, files, contents.dirs


def _tar_gz(root: str, files: dict[str, bytes], empty_dirs: tuple[str, ...] = ()) -> bytes:
    """A reproducible .tar.gz: sorted entries, parents first, fixed metadata, gzip mtime 0 and no file name."""
    dirs = {Path(root, p).parent.as_posix() for p in files} | {f"{root}/{d}" for d in empty_dirs} | {root}
    every_dir = sorted({"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 2)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in every_dir:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            _fixed(info)
            tar.addfile(info)
        for path in sorted(files):
            data = files[path]
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size, info.mode = len(data), 0o644
            _fixed(info)
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())
    return out.getvalue()


def _fixed(info: tarfile.TarInfo) -> None:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""


def export_project(project_dir: Path, out: Path | None = None) -> Path:
    """Write ``project_dir``'s bundle to ``out`` (default ``<project_dir>-export.tar.gz`` beside it); returns the path.

    One-line ``FastmlError`` for a folder that is not a built project, or a backend with nothing to export.
    """
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise FastmlError(f"{project_dir}: not a folder; expected a built project (hls_projects/<name>/)")
    if not (project_dir / "report.json").is_file():
        raise FastmlError(f"{project_dir}: no report.json, not a built project; expected a folder `fastml build` "
                          "wrote (hls_projects/<name>/)")
    root, files, dirs = _bundle_files(project_dir)
    out = Path(out) if out is not None else project_dir.resolve().parent / f"{project_dir.resolve().name}-export.tar.gz"
    if out.is_dir():
        raise FastmlError(f"--out {out}: a folder; expected a file name (e.g. {root}-export.tar.gz)")
    data = _tar_gz(root, files, dirs)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    except OSError as err:
        raise FastmlError(f"--out {out}: cannot write the bundle: {err.strerror}") from None
    return out


__all__ = ["export_project", "readme"]
