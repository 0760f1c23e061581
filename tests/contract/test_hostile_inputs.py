"""Hostile inputs: every file fastml reads fails on bad content with one line naming the file, never a traceback.

The recipe loader is tested property-based (hypothesis): any byte string, and any YAML document (also one
grafted into a valid recipe, so that deep keys are reached), gives a ``BuildConfig`` or a ``ConfigError``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastml.errors import ConfigError, DataError, FastmlError
from fastml.recipe import BuildConfig, load_config

REPO = Path(__file__).resolve().parents[2]
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_bytes(content: bytes, name: str = "recipe.yaml") -> BuildConfig | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            return load_config(path)
        except ConfigError as err:
            text = str(err)
            assert "\n" not in text and str(path) in text, text
            return None


@_SETTINGS
@given(st.binary(max_size=400))
def test_any_bytes_give_a_config_or_one_config_error(content: bytes):
    result = _load_bytes(content)
    assert result is None or isinstance(result, BuildConfig)


_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
_documents = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=4), max_leaves=20)
_SECTIONS = ("name", "data", "model", "train", "firmware", "verify", "budgets", "synth", "data.split",
             "train.beta", "budgets.max_regression", "firmware.precision", "data.source", "model.kind")


@_SETTINGS
@given(_documents)
def test_any_yaml_document_gives_a_config_or_one_config_error(doc):
    result = _load_bytes(yaml.safe_dump(doc).encode())
    assert result is None or isinstance(result, BuildConfig)


@_SETTINGS
@given(st.sampled_from(_SECTIONS), _documents)
def test_any_value_in_a_valid_recipe_gives_a_config_or_one_config_error(key: str, value):
    doc: dict = {"name": "grafted", "train": {"epochs": 1}}
    node = doc
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    result = _load_bytes(yaml.safe_dump(doc).encode())
    assert result is None or isinstance(result, BuildConfig)


@pytest.mark.parametrize(("content", "expected"), [
    (b"name: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at offset 9)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
    (b"", "is empty"),
    (b"   \n# only a comment\n", "expected a YAML mapping"),
    (b"name: [unclosed\n", "not valid YAML at line"),
    (b"name: x\ncreated: 2024-02-30\n", "not valid YAML"),
])
def test_recipe_content_errors_are_one_line(content: bytes, expected: str):
    with pytest.raises(ConfigError) as info:
        _load_bytes_raising(content)
    assert expected in str(info.value) and "\n" not in str(info.value)


def _load_bytes_raising(content: bytes) -> BuildConfig:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_bytes(content)
        return load_config(path)


def test_no_doubled_phrases_in_errors(tmp_path):
    """A validator that already says "got X" must not be followed by a second "; got X"."""
    cases = {"name: ../up\n": "name", "name: ok\nbudgets: {lut: lots}\n": "budgets.lut",
             "name: ok\ndata: {split: {train: 0.5, val: 0.1, test: 0.1}}\n": "data.split",
             "name: ok\nfirmware: {precision: 'ap_fixed<3>'}\n": "firmware.precision"}
    for text, key in cases.items():
        path = tmp_path / "r.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        msg = str(info.value)
        assert f"'{key}'" in msg and msg.count("got ") <= 1, msg


def test_huge_value_is_cut_in_the_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: ok\ntrain: {{epochs: '{'x' * 5000}'}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert len(str(info.value)) < 400 and "..." in str(info.value)


def test_cli_validate_on_binary_recipe_prints_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)))
    done = subprocess.run([sys.executable, "-m", "fastml", "validate", str(path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "not UTF-8" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_budgets_file_not_utf8_is_one_line(tmp_path):
    from fastml.commands.check import load_budgets_file

    path = tmp_path / "budgets.yaml"
    path.write_bytes(b"lut: \xff\xfe\n")
    with pytest.raises(ConfigError, match="budgets file is not UTF-8"):
        load_budgets_file(path)


# ------------------------------------------------------------------------------------------ data files


def _good_arrays(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


def _npz(tmp_path: Path, **arrays) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _bad_data_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, phrase the one-line error must contain)."""
    x, y = _good_arrays()
    good = _npz(tmp_path, x=x, y=y)
    cases: dict[str, tuple[Path, str]] = {}
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated npz"] = (truncated, "cannot read this .npz file")
    text = tmp_path / "text.npz"
    text.write_text("x,y\n1,2\n")
    cases["npz that is text"] = (text, "cannot read this .npz file")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    cases["empty h5"] = (empty, "cannot read this .h5 file")
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1" + bytes(64))
    cases["corrupt parquet"] = (junk, "cannot read this .parquet file")
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"zlogz,class\n\xe9,g\n")
    cases["non-UTF-8 csv"] = (latin, "cannot read this .csv file")
    (tmp_path / "empty.csv").write_text("")
    cases["empty csv"] = (tmp_path / "empty.csv", "empty CSV")
    (tmp_path / "cut.arff").write_text("@relation jets\n@attribute zlogz numeric\n")
    cases["truncated arff"] = (tmp_path / "cut.arff", "no @data section")
    nan_x = x.copy()
    nan_x[7, 2] = np.nan
    cases["NaN feature"] = (_npz(tmp_path / "nan", x=nan_x, y=y), "NaN or inf (first: event 7, feature 'x2')")
    inf_x = x.copy()
    inf_x[3, 0] = np.inf
    cases["inf feature"] = (_npz(tmp_path / "inf", x=inf_x, y=y), "NaN or inf (first: event 3")
    cases["negative label"] = (_npz(tmp_path / "neg", x=x, y=y - 1), "labels range from -1 to 1, expected 0..")
    names = np.array(["a", "b", "c"])
    cases["label beyond classes"] = (_npz(tmp_path / "big", x=x, y=y + 1, class_names=names),
                                     "labels range from 1 to 3, expected 0..2")
    cases["single class"] = (_npz(tmp_path / "one", x=x, y=np.zeros_like(y)), "at least two classes")
    cases["fractional labels"] = (_npz(tmp_path / "frac", x=x, y=y + 0.5), "non-integer labels")
    cases["labels of another length"] = (_npz(tmp_path / "short", x=x, y=y[:10]), "expected (50,) labels")
    cases["string features"] = (_npz(tmp_path / "str", x=x.astype(str), y=y), "expected numbers")
    cases["no events"] = (_npz(tmp_path / "none", x=x[:0], y=y[:0]), "no events")
    cases["1-D features"] = (_npz(tmp_path / "flat", x=x[:, 0], y=y), "expected (events, features)")
    return cases


def test_bad_data_files_give_one_line_naming_the_file(tmp_path):
    from fastml.data import read_source

    for sub in ("nan", "inf", "neg", "big", "one", "frac", "short", "str", "none", "flat"):
        (tmp_path / sub).mkdir()
    failures = []
    for name, (path, phrase) in _bad_data_files(tmp_path).items():
        try:
            read_source(str(path))
        except DataError as err:
            msg = str(err)
            if "\n" in msg or str(path.resolve()) not in msg or phrase not in msg:
                failures.append(f"{name}: {msg}")
        except Exception as err:  # the point of the test: nothing but DataError
            failures.append(f"{name}: {type(err).__name__}: {err}")
        else:
            failures.append(f"{name}: accepted")
    assert not failures, "\n".join(failures)


def test_good_data_file_is_still_read(tmp_path):
    from fastml.data import read_source

    x, y = _good_arrays()
    table = read_source(str(_npz(tmp_path, x=x, y=y)))
    assert table.x.shape == (50, 4) and table.class_names == ("0", "1", "2")


# ------------------------------------------------------------------------------ reports and baselines


@pytest.mark.parametrize(("content", "phrase"), [
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"schema_version": 1, "name": "a", "back', "not valid JSON"),
    (b"", "not valid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"schema_version": 2, "name": "a", "backend": "rtl"}', "schema_version 2, this fastml reads 1"),
    (b'{"schema_version": 1, "name": "a", "backend": "rtl", "verification": {"csim": {"samples": "many"}}}',
     "key 'verification.csim.samples'"),
])
def test_bad_reports_give_one_line(tmp_path, content: bytes, phrase: str):
    from fastml.report import load_report

    path = tmp_path / "report.json"
    path.write_bytes(content)
    with pytest.raises(FastmlError) as info:
        load_report(path)
    assert phrase in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_baseline_of_another_project_is_refused(tmp_path, capsys):
    from fastml.cli import main
    from fastml.report import Report, VerificationLevel, write_report

    for name in ("tagger", "other"):
        report = Report(name=name, backend="rtl")
        report.verification["emulator"] = VerificationLevel(samples=10, mismatches=0)
        write_report(report, tmp_path / name)
    assert main(["check", str(tmp_path / "tagger"), "--baseline", str(tmp_path / "tagger")]) == 0
    capsys.readouterr()
    assert main(["check", str(tmp_path / "tagger"), "--baseline", str(tmp_path / "other" / "report.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "project 'other', expected one of 'tagger'" in err[0]


# ------------------------------------------------------------------------------------------ saved models


def test_corrupt_saved_models_give_one_line(tmp_path):
    import zipfile

    from fastml._internal.model_files import load_keras_model

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(b"PK\x03\x04" + bytes(40))
    not_a_model = tmp_path / "other.keras"
    with zipfile.ZipFile(not_a_model, "w") as z:
        z.writestr("config.json", "{not json")
    for path, phrase in ((tmp_path / "missing.keras", "no saved model"), (truncated, "not a .keras archive"),
                         (not_a_model, "cannot load this Keras model")):
        with pytest.raises(FastmlError) as info:
            load_keras_model(path)
        assert phrase in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
