"""firmware/tb/ of rtl builds and ``fastml export``, proven with simulators that are not fastml's.

One tiny Verilog build and one tiny VHDL build (a 16 -> 8 -> 5 HGQ2 MLP, through ``build_model``, the same
pipeline as ``fastml build``) are shared by the module. Each simulator runs the exported bundle, extracted
into a fresh folder: the testbench must say PASS on the vectors as exported and FAIL (non-zero exit) once
one bit of one expected output is flipped — the proof that it can fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from fastml.backends.rtl.testbench import (  # noqa: E402
    EXPECTED_FILE,
    INPUTS_FILE,
    fields_of,
    quantise,
    read_hex,
    to_values,
    unpack,
)
from fastml.cli import main  # noqa: E402
from fastml.export import export_project  # noqa: E402

TOP = "fastml_model"
N_VERIFY = 200
SIM_TIMEOUT_S = 300


def _tiny_model():
    """A 16 -> 8 -> 5 HGQ2 MLP, one epoch on a synthetic task, ranges calibrated (as tests/test_rtl.py)."""
    import keras
    from hgq.utils import trace_minmax

    from fastml.models.mlp import build_mlp
    from fastml.recipe import MLPConfig

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    y = (x @ rng.normal(size=(16, 5))).argmax(axis=1)
    keras.utils.set_random_seed(0)
    model = build_mlp(MLPConfig(hidden=[8], beta0=1e-4), 16, 5, name="tiny")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=256, verbose=0)
    trace_minmax(model, x, batch_size=8192)
    return model, x, y


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """``{"verilog": project_dir, "vhdl": project_dir}``: tiny rtl builds (no yosys, no verilator library)."""
    from fastml.pipeline import build_model

    model, x, y = _tiny_model()
    out = tmp_path_factory.mktemp("tb_projects")
    built = {}
    for flavor in ("verilog", "vhdl"):
        report = build_model(model, (x, y), name=f"tiny_{flavor}", output_dir=out, progress=False, log=lambda s: None,
                             firmware={"backend": "rtl", "flavor": flavor, "yosys": False},
                             verify={"samples": N_VERIFY, "rtl_sim": False, "compiled_emulator": False})
        assert report.status == "ok"
        built[flavor] = out / f"tiny_{flavor}"
    return built


def _extract(bundle: Path, where: Path) -> Path:
    with tarfile.open(bundle) as tar:
        tar.extractall(where, filter="data")
    (root,) = [p for p in where.iterdir() if p.is_dir()]
    return root


@pytest.fixture(scope="module")
def bundles(projects, tmp_path_factory) -> dict[str, Path]:
    """Each project exported and extracted into a fresh folder (the integrator's copy)."""
    base = tmp_path_factory.mktemp("bundles")
    out = {}
    for flavor, project in projects.items():
        tgz = export_project(project, base / f"{flavor}.tar.gz")
        out[flavor] = _extract(tgz, base / flavor)
    return out


def _flip_one_expected_bit(root: Path, event: int = 7) -> None:
    path = root / "firmware" / "tb" / EXPECTED_FILE
    lines = path.read_text().splitlines()
    data = [i for i, s in enumerate(lines) if not s.startswith("//")]
    line = lines[data[event]]
    lines[data[event]] = format(int(line, 16) ^ 1, f"0{len(line)}X")
    path.write_text("\n".join(lines) + "\n")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=SIM_TIMEOUT_S)


def _last_verdict(out: str) -> str:
    verdicts = [ln for ln in out.splitlines() if "PASS: " in ln or "FAIL: " in ln]
    assert len(verdicts) == 1, out
    return verdicts[0]


# --- what the build writes ---


def test_build_writes_vectors_of_the_verified_events(projects) -> None:
    project = projects["verilog"]
    report = json.loads((project / "report.json").read_text())
    assert report["firmware"]["testbench"] == (f"firmware/tb: {N_VERIFY} events, verilog testbench, "
                                               "0 differ from the reference")
    tb = project / "firmware" / "tb"
    iface = json.loads((tb / "interface.json").read_text())
    assert iface["latency_cycles"] == report["latency"]["cycles"] and iface["ii"] == 1
    assert iface["events"] == N_VERIFY and iface["differs_from_reference"] == 0
    # the port widths are the generated top's
    top_v = (project / "firmware" / "src" / f"{TOP}.v").read_text()
    widths = {p["name"]: p["width"] for p in iface["ports"]}
    assert f"input [{widths['model_inp'] - 1}:0] model_inp" in top_v
    assert f"output reg [{widths['model_out'] - 1}:0] model_out" in top_v
    assert not (tb / f"{TOP}_tb.vhd").exists()  # the VHDL testbench only in VHDL projects

    # decoded, the vectors are the build's own events and reference outputs
    saved = np.load(project / "model" / "verify_inputs.npz")
    in_fields = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["inputs"]])
    out_fields = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["outputs"]])
    inputs = unpack(read_hex(tb / INPUTS_FILE), in_fields)
    assert inputs.tolist() == quantise(np.asarray(saved["x"], np.float64), in_fields).tolist()
    expected = to_values(unpack(read_hex(tb / EXPECTED_FILE), out_fields), out_fields, saved["y_ref"].shape[1])
    np.testing.assert_array_equal(expected, np.asarray(saved["y_ref"], np.float64))
    assert (tb / INPUTS_FILE).read_text().startswith("// fastml test vectors: inputs of fastml_model\n")


# --- fastml export ---


def test_export_is_byte_identical_and_self_describing(projects, bundles, tmp_path) -> None:
    project = projects["verilog"]
    a = export_project(project, tmp_path / "a.tar.gz")
    b = export_project(project, tmp_path / "b.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members if m.isdir()) + sorted(
        m.name for m in members if m.isfile())
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert a.read_bytes()[4:8] == b"\0\0\0\0"  # gzip header mtime

    root = bundles["verilog"]
    sums = (root / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in sums:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == files
    assert {"report.json", "report.html"} <= files  # the build's figures, and the page a reviewer opens
    assert all(hashlib.sha256((root / n).read_bytes()).hexdigest() == d for n, d in listed.items())
    assert (root / "firmware" / "src" / "memfiles").is_dir()  # the testbench's working directory, even if empty
    assert not (root / "firmware" / "sim").exists()  # da4ml's verilator binder is fastml's, not the integrator's

    readme = (root / "README.md").read_text()
    iface = json.loads((root / "firmware" / "tb" / "interface.json").read_text())
    widths = {p["name"]: p["width"] for p in iface["ports"]}
    assert f"| `model_inp` | in | {widths['model_inp']} |" in readme
    assert f"**Latency: {iface['latency_cycles']} clocks**" in readme and "**II = 1**" in readme
    assert "| da4ml_estimate |" in readme and "xcvu13p" in readme and "iverilog -g2012" in readme


def test_export_writes_the_testbench_of_a_project_built_without_one(projects, tmp_path) -> None:
    old = tmp_path / "old"
    shutil.copytree(projects["verilog"], old)
    shutil.rmtree(old / "firmware" / "tb")
    root = _extract(export_project(old, tmp_path / "old.tar.gz"), tmp_path / "x")
    new_tb = projects["verilog"] / "firmware" / "tb"
    for name in (INPUTS_FILE, EXPECTED_FILE, f"{TOP}_tb.v"):
        assert (root / "firmware" / "tb" / name).read_bytes() == (new_tb / name).read_bytes()


def test_export_errors_are_one_line(projects, tmp_path, capsys) -> None:
    from fastml.report import Report, write_report

    assert main(["export", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no report.json, not a built project" in err

    hls = tmp_path / "hls"
    write_report(Report(name="hls", backend="hls4ml"), hls)
    assert main(["export", str(hls)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"fastml: error: export: {hls / 'firmware'}: no hls4ml project")

    assert main(["export", str(projects["verilog"]), "--out", str(tmp_path / "bundle.tar.gz")]) == 0
    assert "exported to" in capsys.readouterr().out and (tmp_path / "bundle.tar.gz").is_file()


# --- other people's simulators, on the exported copy ---


def _sources(root: Path, suffix: str) -> list[str]:
    src = root / "firmware" / "src"
    return [str(p) for p in sorted(src.glob(f"*.{suffix}")) + sorted((src / "static").glob(f"*.{suffix}"))]


# skipif (not a skip inside the test): without the simulator, the shared builds are not paid for
@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="skipped: iverilog not installed (apt-get install iverilog; scripts/bootstrap.sh does it)")
def test_icarus_verilog_passes_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    check_icarus(bundles["verilog"], tmp_path)


def check_icarus(root: Path, tmp_path: Path) -> None:
    """The bundle's Verilog testbench under Icarus: PASS as exported, FAIL on a copy with one expected bit flipped."""
    run_dir = root / "firmware" / "src" / "memfiles"
    tb = root / "firmware" / "tb" / f"{TOP}_tb.v"
    vvp = tmp_path / "tb.vvp"
    comp = _run(["iverilog", "-g2012", "-s", f"{TOP}_tb", "-o", str(vvp), *_sources(root, "v"), str(tb)], run_dir)
    assert comp.returncode == 0, comp.stderr
    ok = _run(["vvp", "-n", str(vvp)], run_dir)
    assert ok.returncode == 0 and _last_verdict(ok.stdout).startswith(f"PASS: {TOP}: {N_VERIFY} events"), ok.stdout

    bad_root = tmp_path / "corrupt"
    shutil.copytree(root, bad_root)
    _flip_one_expected_bit(bad_root)
    bad = _run(["vvp", "-n", str(vvp)], bad_root / "firmware" / "src" / "memfiles")
    assert bad.returncode != 0
    assert f"FAIL: {TOP}: 1 of {N_VERIFY} events mismatch" in _last_verdict(bad.stdout + bad.stderr)
    assert "mismatch: event 7:" in bad.stdout


def test_verilator_binary_passes_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    from fastml._internal.tools import verilator_env
    from fastml.errors import ToolError

    try:
        env = verilator_env()
    except ToolError as err:
        pytest.skip(f"skipped: {err}")
    root = bundles["verilog"]
    run_dir = root / "firmware" / "src" / "memfiles"
    tb = root / "firmware" / "tb" / f"{TOP}_tb.v"
    obj = tmp_path / "obj"
    # -O0: the build is what costs here, not the 200 simulated events
    comp = _run(["verilator", "--binary", "-Wno-fatal", "-CFLAGS", "-std=c++20", "-MAKEFLAGS",
                 "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0", "--top-module", f"{TOP}_tb", "--Mdir", str(obj),
                 *_sources(root, "v"), str(tb)], run_dir, env)
    assert comp.returncode == 0, comp.stdout[-2000:] + comp.stderr[-2000:]
    binary = str(obj / f"V{TOP}_tb")
    ok = _run([binary, "+verilator+quiet"], run_dir)
    assert ok.returncode == 0 and _last_verdict(ok.stdout).startswith(f"PASS: {TOP}: {N_VERIFY} events"), ok.stdout

    bad_root = tmp_path / "corrupt"
    shutil.copytree(root, bad_root)
    _flip_one_expected_bit(bad_root)
    bad = _run([binary, "+verilator+quiet"], bad_root / "firmware" / "src" / "memfiles")
    assert bad.returncode != 0
    assert f"FAIL: {TOP}: 1 of {N_VERIFY} events mismatch" in _last_verdict(bad.stdout + bad.stderr)


@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="not run: iverilog not installed (apt-get install iverilog; scripts/bootstrap.sh does it)")
def test_cocotb_test_passes_with_icarus_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    """The generated cocotb 2 test, run as the integrator runs it (``python firmware/tb/cocotb_fastml_model.py``)."""
    if importlib.util.find_spec("cocotb") is None or importlib.util.find_spec("cocotb_tools") is None:
        pytest.skip("not run: cocotb 2 is not installed (pip install 'cocotb>=2,<3'; the dev extra has it)")
    import sys

    from fastml.backends.rtl.testbench import cocotb_file

    # outside pytest's own environment: cocotb's runner changes how it exits when it sees PYTEST_CURRENT_TEST
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}

    def run(root: Path, build: str) -> subprocess.CompletedProcess[str]:
        script = root / "firmware" / "tb" / cocotb_file(TOP)
        return subprocess.run([sys.executable, str(script), str(tmp_path / build)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=SIM_TIMEOUT_S)

    ok = run(bundles["verilog"], "good")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    assert _last_verdict(ok.stdout).startswith(f"PASS: {TOP}: {N_VERIFY} events, 0 mismatches"), ok.stdout[-3000:]

    bad_root = tmp_path / "corrupt"
    shutil.copytree(bundles["verilog"], bad_root)
    _flip_one_expected_bit(bad_root)
    bad = run(bad_root, "bad")
    assert bad.returncode != 0
    assert _last_verdict(bad.stdout).startswith(f"FAIL: {TOP}: 1 of {N_VERIFY} events mismatch"), bad.stdout[-3000:]
    assert "mismatch: event 7:" in bad.stdout


@pytest.mark.skipif(shutil.which("ghdl") is None,
                    reason="skipped: ghdl not installed (apt-get install ghdl; scripts/bootstrap.sh does it)")
def test_ghdl_runs_the_vhdl_testbench_passes_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    check_ghdl(bundles["vhdl"], tmp_path)


def check_ghdl(root: Path, tmp_path: Path) -> None:
    """The bundle's VHDL testbench under GHDL: PASS as exported, FAIL on a copy with one expected bit flipped."""
    run_dir = root / "firmware" / "src" / "memfiles"
    tb = root / "firmware" / "tb" / f"{TOP}_tb.vhd"
    work = tmp_path / "work"
    work.mkdir()
    ghdl = ["ghdl", "--std=08", f"--workdir={work}"]
    for step in (["-i", *_sources(root, "vhd"), str(tb)], ["-m", f"{TOP}_tb"]):
        comp = _run([ghdl[0], step[0], *ghdl[1:], *step[1:]], run_dir)
        assert comp.returncode == 0, comp.stdout + comp.stderr
    ok = _run([ghdl[0], "-r", *ghdl[1:], f"{TOP}_tb"], run_dir)
    assert ok.returncode == 0 and _last_verdict(ok.stdout).startswith(f"PASS: {TOP}: {N_VERIFY} events"), ok.stdout

    bad_root = tmp_path / "corrupt"
    shutil.copytree(root, bad_root)
    _flip_one_expected_bit(bad_root)
    bad = _run([ghdl[0], "-r", *ghdl[1:], f"{TOP}_tb"], bad_root / "firmware" / "src" / "memfiles")
    assert bad.returncode != 0
    assert f"FAIL: {TOP}: 1 of {N_VERIFY} events mismatch" in _last_verdict(bad.stdout)
