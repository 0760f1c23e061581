"""Backends and model kinds from other packages: registered through entry points, found by name, used end to end
by the recipe and ``get_backend`` (a real ``*.dist-info`` on ``sys.path``, read by ``importlib.metadata``)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from fastml import recipe
from fastml._internal import plugins
from fastml.backends import Backend, backend_names, get_backend
from fastml.errors import ConfigError, FastmlError
from fastml.recipe import model_kind, model_kind_names, parse_config

PLUGIN = '''
from pathlib import Path
from typing import Literal

from fastml.backends import Backend, FirmwareProject
from fastml.models.base import ModelKind, TrainedModel
from fastml.recipe import ModelSection


class EchoBackend(Backend):
    name = "echo"
    families = ("network",)

    def convert(self, trained, cfg, project_dir):
        (project_dir / "firmware").mkdir(parents=True, exist_ok=True)
        return FirmwareProject(backend=self.name, path=project_dir / "firmware", simulators={"echo": lambda x: x},
                               reference=lambda x: x)


class ConstantSection(ModelSection):
    kind: Literal["constant"] = "constant"
    value: float = 1.0


class ConstantKind(ModelKind):
    name = "constant"
    Section = ConstantSection
    backends = ("echo", "rtl")

    def train(self, cfg, data, epochs=None, progress=True):
        raise NotImplementedError
'''


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package ``fastml_echo_plugin`` installed into ``tmp_path`` with its entry points, as pip would."""
    (tmp_path / "fastml_echo_plugin.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "fastml_echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fastml-echo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fastml.backends]\necho = fastml_echo_plugin:EchoBackend\n\n"
                                           "[fastml.model_kinds]\nconstant = fastml_echo_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    plugins.forget()
    get_backend.cache_clear()
    yield "fastml_echo_plugin"
    plugins.forget()
    get_backend.cache_clear()
    sys.modules.pop("fastml_echo_plugin", None)
    recipe._KINDS.pop("constant", None)  # uninstalled: the kind its import registered goes too


def test_builtin_backends_are_found_by_name() -> None:
    assert backend_names()[:3] == ("hls4ml", "rtl", "conifer")
    for name in ("hls4ml", "rtl", "conifer"):
        backend = get_backend(name)
        assert isinstance(backend, Backend) and backend.name == name
    with pytest.raises(FastmlError, match="unknown firmware backend 'vivado'; expected one of: hls4ml, rtl, conifer"):
        get_backend("vivado")


def test_a_recipe_loads_only_the_kind_it_names() -> None:
    """``fastml validate`` of an MLP recipe does not import the QONNX or QKeras kinds (nor their libraries)."""
    import subprocess

    code = ("import sys; from fastml.recipe import parse_config; parse_config({'name': 't'}); "
            "print(sorted(m for m in sys.modules if m.startswith('fastml.models.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = eval(out)  # a printed list of module names
    assert "fastml.models.mlp" in loaded
    assert not {"fastml.models.qonnx_model", "fastml.models.qkeras_model", "fastml.models.bdt"} & set(loaded)


def test_an_installed_plugin_adds_a_backend_and_a_kind(installed_plugin: str) -> None:
    assert "echo" in backend_names() and "constant" in model_kind_names()
    assert type(get_backend("echo")).__module__ == installed_plugin
    cfg = parse_config({"name": "t", "model": {"kind": "constant", "value": 2.0}, "firmware": {"backend": "echo"}})
    assert cfg.model.kind == "constant" and cfg.model.value == 2.0  # type: ignore[attr-defined]
    assert model_kind("constant").__module__ == installed_plugin  # type: ignore[union-attr]
    # the plugin's backend is checked like a built-in one: the kind lists which backends build it
    with pytest.raises(ConfigError, match=r"key 'firmware.backend': 'conifer' cannot build model.kind 'constant'; "
                                          r"expected one of: echo, rtl"):
        parse_config({"name": "t", "model": {"kind": "constant"}, "firmware": {"backend": "conifer"}})
    # an unknown key of the plugin's section reads like any other
    with pytest.raises(ConfigError, match=r"unknown key 'model.valu' in 'model'; expected one of: kind, value"):
        parse_config({"name": "t", "model": {"kind": "constant", "valu": 1}, "firmware": {"backend": "echo"}})


def test_without_the_plugin_its_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"key 'firmware.backend': Input should be 'hls4ml', 'rtl' or 'conifer'; "
                                          r"got 'echo'"):
        parse_config({"name": "t", "firmware": {"backend": "echo"}})
    with pytest.raises(ConfigError, match=r"key 'model.kind': expected one of: .*mlp.*; got 'constant'"):
        parse_config({"name": "t", "model": {"kind": "constant"}})
