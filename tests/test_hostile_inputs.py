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

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastml.config import BuildConfig, load_config
from fastml.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
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
