"""firmware/tb/ and ``fastml export`` of rtl builds compiled by alkaid (``firmware.compiler: alkaid``), proven with
simulators that are not fastml's, as tests/integration/test_testbench.py proves them for da4ml builds.

Two tiny builds of the 16 -> 8 -> 5 HGQ2 MLP through alkaid (``build_model``, the pipeline of ``fastml build``):
Verilog without a verilator library (test_rtl_alkaid.py verilates alkaid's Verilog), and VHDL with it — alkaid's
VHDL-2008 converted by ``ghdl synth`` and verilated, bit-exact against the quantised model. The exported bundle's
testbench must say PASS on the vectors as exported and FAIL once one bit of one expected output is flipped.
``fastml diagnose`` of the same project: no divergence as built, "saved logic" once its saved logic is edited.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastml._internal.keras_backend import ensure_backend

ensure_backend()

from test_testbench import (  # noqa: E402
    N_VERIFY,
    TOP,
    _extract,
    _tiny_model,
    check_ghdl,
    check_icarus,
)

from fastml.backends.rtl.testbench import (  # noqa: E402
    EXPECTED_FILE,
    INPUTS_FILE,
    fields_of,
    quantise,
    read_hex,
    to_values,
    unpack,
)
from fastml.errors import FastmlError  # noqa: E402
from fastml.export import export_project  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("alkaid") is None,
                                 reason="not run: alkaid is not installed (pip install alkaid)")]


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Path]:
    """``{"verilog": project_dir, "vhdl": project_dir}`` through alkaid; the VHDL one verilated through ghdl when
    ghdl is installed."""
    from fastml._internal.tools import find_ghdl
    from fastml.pipeline import build_model

    model, x, y = _tiny_model()
    out = tmp_path_factory.mktemp("alkaid_tb_projects")
    built = {}
    for flavor in ("verilog", "vhdl"):
        rtl_sim = flavor == "vhdl" and find_ghdl() is not None
        report = build_model(model, (x, y), name=f"tiny_alkaid_{flavor}", output_dir=out, progress=False,
                             log=lambda s: None,
                             firmware={"backend": "rtl", "compiler": "alkaid", "flavor": flavor, "yosys": False},
                             verify={"samples": N_VERIFY, "rtl_sim": rtl_sim, "compiled_emulator": False})
        assert report.status == "ok"
        built[flavor] = out / f"tiny_alkaid_{flavor}"
    return built


@pytest.fixture(scope="module")
def bundles(projects, tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("alkaid_bundles")
    return {flavor: _extract(export_project(project, base / f"{flavor}.tar.gz"), base / flavor)
            for flavor, project in projects.items()}


def test_alkaid_build_writes_vectors_of_the_verified_events(projects) -> None:
    project = projects["verilog"]
    report = json.loads((project / "report.json").read_text())
    assert report["firmware"]["testbench"] == (f"firmware/tb: {N_VERIFY} events, verilog testbench, "
                                               "0 differ from the reference")
    tb = project / "firmware" / "tb"
    iface = json.loads((tb / "interface.json").read_text())
    assert iface["compiler"].startswith("alkaid ") and iface["compiler"] == report["latency"]["compiler"]
    assert iface["latency_cycles"] == report["latency"]["cycles"] and iface["ii"] == 1
    assert iface["events"] == N_VERIFY and iface["differs_from_reference"] == 0
    # the port widths are alkaid's top's (its wrapper pads every element to one format; the top packs them)
    top_v = (project / "firmware" / "src" / f"{TOP}.v").read_text()
    widths = {p["name"]: p["width"] for p in iface["ports"]}
    assert f"input wire [{widths['model_inp'] - 1}:0] model_inp" in top_v
    assert f"output reg [{widths['model_out'] - 1}:0] model_out" in top_v
    assert "da4ml" not in (tb / f"{TOP}_tb.v").read_text()  # no lookup-table story: alkaid's RTL reads no files
    assert not (tb / f"{TOP}_tb.vhd").exists()

    saved = np.load(project / "model" / "verify_inputs.npz")
    in_fields = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["inputs"]])
    out_fields = fields_of([(f["signed"], f["integers"], f["fractional"]) for f in iface["outputs"]])
    inputs = unpack(read_hex(tb / INPUTS_FILE), in_fields)
    assert inputs.tolist() == quantise(np.asarray(saved["x"], np.float64), in_fields).tolist()
    expected = to_values(unpack(read_hex(tb / EXPECTED_FILE), out_fields), out_fields, saved["y_ref"].shape[1])
    assert len(np.unique(expected)) > 20  # the vectors vary: a stuck output would not pass for them
    np.testing.assert_array_equal(expected, np.asarray(saved["y_ref"], np.float64))


def test_alkaid_vhdl_verilated_through_ghdl_is_bit_exact(projects) -> None:
    from fastml._internal.tools import find_ghdl

    report = json.loads((projects["vhdl"] / "report.json").read_text())
    if find_ghdl() is None:
        assert report["checks"]["bit_exact_rtl_sim"].startswith("not run: ") and "ghdl" in \
            report["checks"]["bit_exact_rtl_sim"]
        pytest.skip("skipped: ghdl not installed (apt-get install ghdl): alkaid's VHDL is verilated through it")
    level = report["verification"]["rtl_sim"]
    assert level["samples"] == N_VERIFY and level["mismatches"] == 0
    assert report["checks"]["bit_exact_rtl_sim"] == "pass"
    assert report["firmware"]["testbench"] == (f"firmware/tb: {N_VERIFY} events, vhdl testbench, "
                                               "0 differ from the reference")


def test_alkaid_export_writes_the_testbench_of_a_project_built_without_one(projects, tmp_path) -> None:
    old = tmp_path / "old"
    shutil.copytree(projects["verilog"], old)
    shutil.rmtree(old / "firmware" / "tb")
    root = _extract(export_project(old, tmp_path / "old.tar.gz"), tmp_path / "x")
    new_tb = projects["verilog"] / "firmware" / "tb"
    for name in (INPUTS_FILE, EXPECTED_FILE, f"{TOP}_tb.v", "interface.json"):
        assert (root / "firmware" / "tb" / name).read_bytes() == (new_tb / name).read_bytes()
    readme = (root / "README.md").read_text()
    assert "iverilog -g2012" in readme and "| `model_inp` | in | " in readme
    assert "alkaid's RTL reads no files" in readme and "lookup tables" not in readme
    from importlib.metadata import version
    assert f"alkaid {version('alkaid')};" in readme.splitlines()[2]  # the compiler that wrote the RTL, not da4ml
    assert not (root / "firmware" / "sim").exists() and not (root / "firmware" / "model").exists()


def test_alkaid_testbench_of_a_damaged_project_is_one_line(projects, tmp_path) -> None:
    from fastml.backends import get_backend

    broken = tmp_path / "broken"
    shutil.copytree(projects["verilog"], broken)
    (broken / "firmware" / "model" / "fsm.json.gz").unlink()
    with pytest.raises(FastmlError) as err:
        get_backend("rtl").testbench(broken, np.zeros((3, 16)), None)
    msg = str(err.value)
    assert "\n" not in msg and "cannot read the alkaid project" in msg and "model/fsm.json.gz" in msg


@pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                    reason="skipped: iverilog not installed (apt-get install iverilog; scripts/bootstrap.sh does it)")
def test_alkaid_icarus_verilog_passes_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    check_icarus(bundles["verilog"], tmp_path)


@pytest.mark.skipif(shutil.which("ghdl") is None,
                    reason="skipped: ghdl not installed (apt-get install ghdl; scripts/bootstrap.sh does it)")
def test_alkaid_ghdl_runs_the_vhdl_testbench_passes_and_fails_on_one_flipped_bit(bundles, tmp_path) -> None:
    check_ghdl(bundles["vhdl"], tmp_path)


# --- fastml diagnose on the same projects ---


def test_alkaid_diagnose_correct_project_has_no_divergence(projects) -> None:
    from fastml.diagnose import diagnose

    diag = diagnose(projects["verilog"])
    assert diag.not_run is None and diag.firmware.startswith("alkaid interpreter")
    assert [(ly.name, ly.status) for ly in diag.layers] == [
        ("dense_bn_0_iq", "match"), ("dense_bn_0_relu", "match"), ("logits_iq", "match"), ("logits", "match")]
    assert diag.output_mismatches == 0 and diag.output_elements == N_VERIFY * 5 and diag.first_divergent_layer is None


def test_alkaid_diagnose_names_edited_saved_logic(projects, tmp_path) -> None:
    from alkaid.types import CombLogic

    from fastml.diagnose import diagnose

    project = tmp_path / "edited"
    shutil.copytree(projects["verilog"], project)
    path = project / "firmware" / "model" / "comb.json.gz"
    comb = CombLogic.load(path)
    comb._replace(out_shifts=[comb.out_shifts[0] + 1, *comb.out_shifts[1:]]).save(path)  # output 0 doubled
    diag = diagnose(project)
    assert all(ly.status == "match" for ly in diag.layers)  # the model's own trace is still right
    assert diag.output_mismatches and diag.output_mismatches > 0
    assert diag.first_divergent_layer == "saved logic" and diag.cause == "value"
    assert "firmware/model/comb.json.gz" in (diag.hint or "")
