"""Config parsing: every malformed recipe gives one line naming file, key and expected form."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastml.cli import main
from fastml.errors import ConfigError
from fastml.recipe import BuildConfig, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg, "errors must be one line"
    assert str(path) in msg, "errors must name the file"
    return msg


@pytest.mark.parametrize("path", sorted(p for p in (REPO / "configs").glob("*.yaml")
                                        if not p.name.endswith("_scan.yaml")),  # scans: tests/integration/test_scan.py
                         ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, BuildConfig)
    assert cfg.name


def test_defaults_fill_a_minimal_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "name: t\n"))
    assert cfg.firmware.backend == "hls4ml"
    assert cfg.firmware.strategy == "distributed_arithmetic"
    assert cfg.verify.samples == 10_000
    assert cfg.budgets.max_mismatches == 0
    assert cfg.project_dir == Path("hls_projects") / "t"


def test_unknown_key_names_key_and_known_keys(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nfirmware:\n  clock_perod_ns: 4\n"))
    assert "firmware.clock_perod_ns" in msg
    assert "clock_period_ns" in msg  # the expected keys are listed


def test_unknown_top_level_key(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nfirmwre: {}\n"))
    assert "firmwre" in msg and "top level" in msg


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nverify:\n  samples: many\n"))
    assert "verify.samples" in msg and "'many'" in msg


def test_out_of_range_value(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nfirmware: {clock_period_ns: -1}\n"))
    assert "firmware.clock_period_ns" in msg and "greater than 0" in msg


def test_missing_name(tmp_path: Path) -> None:
    assert "missing required key 'name'" in config_error(write(tmp_path, "data: {}\n"))


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_yaml_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    assert "expected a YAML mapping" in config_error(write(tmp_path, text))


def test_invalid_yaml_gives_line(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nmodel: {kind: mlp\n"))
    assert "not valid YAML" in msg and "line" in msg


def test_yaml_object_tags_are_refused(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n"))
    assert "not valid YAML" in msg


def test_missing_config_file(tmp_path: Path) -> None:
    assert "not found" in config_error(tmp_path / "nope.yaml")


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\ndata: {source: nowhere.npz}\n"))
    assert "data.source" in msg and str(tmp_path / "nowhere.npz") in msg


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "x" * 65, "a..b"])
def test_name_cannot_climb_out_of_output_dir(tmp_path: Path, name: str) -> None:
    msg = config_error(write(tmp_path, f"name: {name!r}\n"))
    assert "key 'name'" in msg


def test_bad_resource_budget(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nbudgets: {lut: lots}\n"))
    assert "budgets.lut" in msg and "percentage" in msg


def test_backend_must_fit_model_kind(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nmodel: {kind: bdt}\n"))
    assert "conifer" in msg


def test_overrides_and_hash(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\n")
    a = load_config(path)
    b = load_config(path, {"firmware": {"output_dir": str(tmp_path / "out")}})
    assert b.project_dir == tmp_path / "out" / "t"
    assert a.config_hash() != b.config_hash()
    assert a.config_hash() == load_config(path).config_hash()


def test_parse_config_roundtrip_yaml() -> None:
    cfg = parse_config({"name": "rt", "model": {"mlp": {"hidden": [4, 4]}}})
    import yaml

    again = parse_config(yaml.safe_load(cfg.to_yaml()))
    assert again.model.hidden == [4, 4]


def test_validate_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "name: t\n", "good.yaml")
    bad = write(tmp_path, "name: t\nverify: {samples: 0}\n", "bad.yaml")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fastml: error:") and "verify.samples" in err[0]


def test_bad_conifer_precision(tmp_path: Path) -> None:
    msg = config_error(write(tmp_path, "name: t\nfirmware: {precision: 'fixed 18 8'}\n"))
    assert "firmware.precision" in msg and "ap_fixed<W,I>" in msg
