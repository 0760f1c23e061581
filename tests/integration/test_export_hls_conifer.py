"""``fastml export`` of hls4ml and conifer projects, run from the extracted bundle with tools that are not fastml's.

hls4ml: the session's quick jet-tagger build (``quick_jet_build``). Exported twice, byte-identical; extracted into a
fresh folder, ``sha256sum -c SHA256SUMS`` passes and the g++ command the bundle's README states compiles and runs
the checking copy of hls4ml's C testbench: PASS, exit 0; one expected value changed in the extracted ``tb_data``:
FAIL, exit 1. conifer: a tiny BDT (2 rounds of depth 2, ``conifer_backend: vhdl``) built once for the module; the
README's GHDL command on the extracted bundle says PASS, and FAIL (non-zero exit) once one expected bit is flipped.
A conifer ``cpp`` project and a folder with no hls4ml project are refused in one line.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fastml.backends._export import c_arguments, c_prototype
from fastml.backends._testbench import EXPECTED_FILE
from fastml.cli import main
from fastml.export import export_project
from fastml.report import Report, write_report

N_VERIFY = 200
RUN_TIMEOUT_S = 600

BDT_RECIPE = """\
name: {name}
data:
  source: builtin:jets_hlf
  max_samples: 3000
model:
  kind: bdt
  library: xgboost
  n_estimators: 2
  max_depth: 2
firmware:
  backend: conifer
  conifer_backend: vhdl
  precision: "ap_fixed<16,6>"
  clock_period_ns: 4.0
  yosys: false
  output_dir: {out}
verify:
  samples: {samples}
"""


def _export_twice(project: Path, tmp_path: Path) -> Path:
    """The bundle, after checking that a second export is byte-identical; extracted into ``tmp_path/x``."""
    a = export_project(project, tmp_path / "a.tar.gz")
    b = export_project(project, tmp_path / "b.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    where = tmp_path / "x"
    with tarfile.open(a) as tar:
        tar.extractall(where, filter="data")
    (root,) = where.iterdir()
    sums = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=root, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    return root


def _commands(readme: str) -> list[str]:
    """The shell lines of the README's first ``sh`` block, comments and ``cd`` left out."""
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    return [ln for ln in block.splitlines() if ln and not ln.startswith(("#", "cd "))]


def _run(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def _verdict(out: str) -> str:
    verdicts = [ln for ln in out.splitlines() if ln.startswith(("PASS: ", "FAIL: "))]
    assert len(verdicts) == 1, out[-3000:]
    return verdicts[0]


# --- hls4ml ---

@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("sha256sum") is None,
                    reason="not run: g++ or sha256sum not installed (apt-get install g++ coreutils)")
def test_hls4ml_bundle_checks_itself_with_gxx(quick_jet_build, tmp_path: Path) -> None:
    project, report = quick_jet_build
    n = report.verification["csim"].samples
    root = _export_twice(project, tmp_path)
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"firmware/jet_tagger_test.cpp", "firmware/tb/jet_tagger_check.cpp", "firmware/tb/interface.json",
            "firmware/tb_data/tb_input_features.dat", "firmware/tb_data/tb_output_predictions.dat",
            "firmware/build_prj.tcl", "firmware/project.tcl", "firmware/firmware/jet_tagger.cpp",
            "firmware/firmware/defines.h", "firmware/firmware/ap_types/ap_fixed.h"} <= files
    # compiled objects, hls4ml's Python binding and its config with this machine's paths stay behind
    assert not [f for f in files if f.endswith((".so", ".o", "_bridge.cpp", "build_lib.sh", ".yml", ".keras"))]

    readme = (root / "README.md").read_text()
    assert f"hls4ml {report.versions['hls4ml']}" in readme.splitlines()[2]
    assert "Top function `jet_tagger`" in readme and "part `xcvu13p-flga2577-2-e`, clock 5 ns" in readme
    features_t = next(ln for ln in (project / "firmware/firmware/defines.h").read_text().splitlines()
                      if ln.endswith(" features_t;")).split()[1]
    assert f"| `features` | in | 16 | `features_t` | `{features_t}` |" in readme
    assert "| `layer12_out` | out | 5 | `result_t` |" in readme
    assert f"**Latency: {report.latency.cycles} clocks**" in readme and "vitis_hls -f build_prj.tcl" in readme

    (gxx,) = [c for c in _commands(readme) if c.startswith("g++ ")]
    binary = tmp_path / "jet_tagger_check"
    ok = _run(gxx.replace("/tmp/jet_tagger_check", str(binary)), root / "firmware")  # compile and run
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert _verdict(ok.stdout) == f"PASS: jet_tagger: {n} events, 0 mismatches (C simulation)"

    expected = root / "firmware" / "tb_data" / "tb_output_predictions.dat"
    lines = expected.read_text().splitlines()
    values = lines[9].split()
    values[2] = repr(float(values[2]) + 2.0**-6)  # event 9, output 2
    lines[9] = " ".join(values)
    expected.write_text("\n".join(lines) + "\n")
    bad = _run(str(binary), root / "firmware")
    assert bad.returncode == 1
    assert _verdict(bad.stdout) == f"FAIL: jet_tagger: 1 of {n} events mismatch, {n} events read (C simulation)"
    assert "mismatch: event 9: output 2 " in bad.stdout


# --- conifer VHDL ---

@pytest.fixture(scope="module")
def bdt_vhdl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny conifer VHDL BDT built through ``fastml.pipeline.build`` (no yosys): its project folder."""
    from fastml.pipeline import build
    from fastml.recipe import load_config

    out = tmp_path_factory.mktemp("export_bdt")
    recipe = out / "bdt_export.yaml"
    recipe.write_text(BDT_RECIPE.format(name="bdt_export", out=out / "projects", samples=N_VERIFY))
    report = build(load_config(recipe), quick=True, progress=False, log=lambda _: None)
    assert report.status == "ok"
    return out / "projects" / "bdt_export"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ghdl") is None or shutil.which("sha256sum") is None,
                    reason="not run: ghdl or sha256sum not installed (apt-get install ghdl coreutils)")
def test_conifer_vhdl_bundle_passes_ghdl_and_fails_on_one_flipped_bit(bdt_vhdl: Path, tmp_path: Path) -> None:
    root = _export_twice(bdt_vhdl, tmp_path)
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"firmware/firmware/BDTTop.vhd", "firmware/tb/BDTTop_tb.vhd", f"firmware/tb/{EXPECTED_FILE}",
            "firmware/synth.tcl"} <= files
    # GHDL's libraries, conifer's last simulation and its saved model (this machine's output_dir) stay behind
    assert not [f for f in files if f.endswith((".cf", ".txt", ".log", ".sh", "bdt_export.json"))]

    readme = (root / "README.md").read_text()
    assert "conifer " in readme.splitlines()[2] and "da4ml" not in readme.splitlines()[2]
    assert "**Latency: 7 clocks**" in readme and "| `X` | in | 256 |" in readme
    (ghdl,) = [c for c in _commands(readme) if "ghdl -r" in c]
    ghdl = ghdl.replace("/tmp/BDTTop_ghdl", str(tmp_path / "ghdl"))  # a work library of this test's own
    ok = _run(ghdl, root / "firmware")
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    assert _verdict(ok.stdout) == f"PASS: BDTTop: {N_VERIFY} events, 0 mismatches (latency 7 clocks, II=1)"

    expected = root / "firmware" / "tb" / EXPECTED_FILE
    lines = expected.read_text().splitlines()
    data = [i for i, s in enumerate(lines) if not s.startswith("//")]
    lines[data[4]] = format(int(lines[data[4]], 16) ^ (1 << 33), f"0{len(lines[data[4]])}X")  # score 2, bit 1
    expected.write_text("\n".join(lines) + "\n")
    bad = _run(ghdl, root / "firmware")
    assert bad.returncode != 0
    assert _verdict(bad.stdout).startswith(f"FAIL: BDTTop: 1 of {N_VERIFY} events mismatch")
    assert "mismatch: event 4:" in bad.stdout


@pytest.mark.slow
@pytest.mark.parametrize("which", ["hls4ml", "conifer"])
def test_export_writes_the_testbench_of_a_project_built_without_one(which: str, request, tmp_path: Path) -> None:
    """From the saved verification events (model/verify_inputs.npz): the same files the build wrote."""
    project = request.getfixturevalue("quick_jet_build")[0] if which == "hls4ml" else request.getfixturevalue(
        "bdt_vhdl")
    old = tmp_path / "old"
    shutil.copytree(project, old, ignore=shutil.ignore_patterns("*.so", "*.cf"))
    shutil.rmtree(old / "firmware" / "tb")
    if which == "hls4ml":
        shutil.rmtree(old / "firmware" / "tb_data")
    with tarfile.open(export_project(old, tmp_path / "old.tar.gz")) as tar:
        bundled = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    written = [f for f in bundled if f.startswith(("firmware/tb/", "firmware/tb_data/"))]
    assert len(written) == 4  # hls4ml: check.cpp, interface.json, the two .dat; conifer: two vectors, .vhd, .json
    for name in written:
        assert bundled[name] == (project / name).read_bytes(), name


# --- refusals, and the reading of HLS sources (no build) ---

def test_a_project_with_nothing_to_export_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    cpp = tmp_path / "bdt_cpp"
    write_report(Report(name="bdt_cpp", backend="conifer", firmware={"conifer_backend": "cpp"}), cpp)
    (cpp / "firmware").mkdir()
    (cpp / "firmware" / "bridge.cpp").write_text("// conifer's cpp backend: an emulation, no firmware\n")
    assert main(["export", str(cpp)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fastml: error: export: {cpp}: conifer_backend 'cpp' has no "
                                                   "firmware to hand over")
    assert "vhdl" in err and "xilinxhls" in err and not (tmp_path / "bdt_cpp-export.tar.gz").exists()

    hls = tmp_path / "hls"
    write_report(Report(name="hls", backend="hls4ml"), hls)
    assert main(["export", str(hls)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"fastml: error: export: {hls / 'firmware'}: no hls4ml project")


def test_top_function_arguments_read_from_hls_sources(tmp_path: Path) -> None:
    """io_stream words (``nnet::array``), ``#define`` sizes, typedef chains and sizes that stay expressions."""
    header = tmp_path / "top.h"
    header.write_text("void top(\n    hls::stream<input_t> &inp,\n    hls::stream<result_t> &out\n);\n")
    defines = ("typedef nnet::array<ap_fixed<9,5>, 16*1> input_t;\n"
               "typedef nnet::array<ap_ufixed<8,2,AP_RND,AP_SAT>, 4*1> result_t;\n")
    rows = c_arguments(c_prototype(header, "top"), defines, lambda _, name: "in" if name == "inp" else "out",
                       {"inp": [16], "out": [2, 2]})
    assert [(r["name"], r["direction"], r["elements"], r["element"], r["per_word"]) for r in rows] == [
        ("inp", "in", 16, "ap_fixed<9,5>", "16*1"), ("out", "out", 4, "ap_ufixed<8,2,AP_RND,AP_SAT>", "4*1")]

    source = tmp_path / "bdt.cpp"
    source.write_text("void bdt(input_arr_t x, score_t s[N_CLASSES], score_t t[f(n_classes) * n_trees]){\n}\n")
    params = "static const int n_features = 16;\n#define N_CLASSES 3\ntypedef ap_fixed<16,6> input_t;\n" \
             "typedef input_t input_arr_t[n_features];\ntypedef ap_fixed<12,4> score_t;\n"
    prototype = c_prototype(source, "bdt")
    assert prototype == "void bdt(input_arr_t x, score_t s[N_CLASSES], score_t t[f(n_classes) * n_trees]);"
    rows = c_arguments(prototype, params, lambda position, _: "in" if position == 0 else "out")
    assert [(r["name"], r["elements"], r["element"]) for r in rows] == [
        ("x", 16, "ap_fixed<16,6>"), ("s", 3, "ap_fixed<12,4>"), ("t", "f(n_classes) * n_trees", "ap_fixed<12,4>")]
