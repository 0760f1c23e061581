"""``kind: qonnx`` on QONNX files as the model zoo publishes them (../shared/peer-models): legacy domains load,
a float graph and what hls4ml cannot build exactly are refused by node in one line, and the float edges (an
unquantised input, a final Softmax) become explicit, recorded choices."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from fastml.errors import ConfigError
from fastml.recipe import load_config

PEER = Path(__file__).resolve().parents[3] / ".." / "shared" / "peer-models"
JET = PEER / "qonnx_jettagging"
TFC = PEER / "brevitas_tfc_2w2a"


@pytest.fixture(autouse=True)
def _corpus() -> None:
    if not PEER.is_dir():
        pytest.skip("../shared/peer-models not present")


def _train(recipe: Path) -> Any:
    from fastml.data import load_data
    from fastml.pipeline import train

    cfg = load_config(recipe)
    return train(cfg, load_data(cfg.data, cfg.config_dir), progress=False)


def _jet_recipe(tmp_path: Path, **model: Any) -> Path:
    """The corpus jet-tagger recipe with extra ``model`` keys (the corpus file itself stays as published)."""
    recipe = yaml.safe_load((JET / "recipe.yaml").read_text())
    recipe["model"] = {**recipe["model"], "path": str(JET / "qkeras_jettagging.onnx"), **model}
    recipe["firmware"]["output_dir"] = str(tmp_path / "out")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def _quantise(x: np.ndarray, f: int, width: int, signed: int) -> np.ndarray:
    """What a Quant node with scale 2^-f computes: round half to even, saturate."""
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2 ** width - 1)
    return (np.clip(np.round(np.asarray(x, np.float64) * 2.0 ** f), lo, hi) * 2.0 ** -f).astype(np.float32)


def test_legacy_domains_load_after_qonnx_clean_up_without_warnings() -> None:
    import onnx

    from fastml.models.qonnx_model import load_qonnx

    for path, legacy in ((JET / "qkeras_jettagging.onnx", "finn.custom_op.general"),
                         (TFC / "TFC_2W2A.onnx", "onnx.brevitas")):
        raw = onnx.load(str(path))
        assert {n.domain for n in raw.graph.node if n.op_type == "Quant"} == {legacy}
        with pytest.raises(onnx.checker.ValidationError):  # what fastml used to refuse the file on
            onnx.checker.check_model(raw)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # qonnx's domain note would fail the test
            wrapper = load_qonnx(path)
        quants = [n for n in wrapper.graph.node if n.op_type == "Quant"]
        assert quants and {n.domain for n in quants} == {"qonnx.custom_op.general"}


def test_float_graph_is_refused_in_one_line_saying_what_to_do() -> None:
    with pytest.raises(ConfigError) as err:
        _train(PEER / "onnx_float_pytorch_3layer" / "recipe.yaml")
    msg = _one_line(err)
    assert "three_layer_pytorch.onnx" in msg and "no Quant node" in msg
    assert "quantize: true" in msg and "export it with quantisers" in msg


def test_non_power_of_two_scales_refused_in_one_line_without_qonnx_warnings() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ConfigError) as err:
            _train(PEER / "brevitas_unsw_nb15" / "recipe.yaml")
    msg = _one_line(err)
    assert "(Quant)" in msg and "power-of-two" in msg and "unsw_nb15-mlp-w2a2.onnx" in msg
    assert not [w for w in caught if "qonnx" in str(w.filename)], [str(w.message) for w in caught]


def test_float_batch_normalization_is_refused_naming_the_node() -> None:
    with pytest.raises(ConfigError) as err:
        _train(TFC / "recipe.yaml")  # flat (n, 784) inputs: the shape is accepted, the node is not
    msg = _one_line(err)
    assert "'BatchNormalization_0' (BatchNormalization)" in msg and "bit for bit" in msg


def test_flat_input_feeds_a_graph_that_flattens_first() -> None:
    from fastml.models.qonnx_model import execute, flatten_input, load_qonnx

    image = load_qonnx(TFC / "TFC_2W2A.onnx")
    flat = load_qonnx(TFC / "TFC_2W2A.onnx")
    assert not flatten_input(flat, (783,))  # a different size is not the same events
    assert flatten_input(flat, (784,))
    assert tuple(flat.get_tensor_shape(flat.graph.input[0].name)) == (1, 784)
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    # the published graph reshapes to (1, -1): it runs one event at a time
    per_event = np.concatenate([execute(image, x[i:i + 1].reshape(1, 1, 28, 28)) for i in range(len(x))])
    np.testing.assert_array_equal(execute(flat, x), per_event)


def test_float_input_gets_a_quant_node_of_the_chosen_type_and_softmax_is_dropped(tmp_path: Path) -> None:
    from fastml.data import load_data
    from fastml.models.float_edges import resolve_precision
    from fastml.models.qonnx_model import INPUT_QUANT

    trained = _train(JET / "recipe.yaml")  # as published and as the corpus recipe says: input_precision auto
    cfg = load_config(JET / "recipe.yaml")
    data = load_data(cfg.data, cfg.config_dir)
    chosen, how = resolve_precision("auto", data.x_train, "model.input_precision")
    wrapper = trained.model.wrapper
    inp = wrapper.graph.input[0].name
    (quant,) = [n for n in wrapper.graph.node if inp in n.input]
    assert quant.name == INPUT_QUANT and quant.op_type == "Quant"
    assert float(wrapper.get_initializer(quant.input[1])) == chosen.step
    assert float(wrapper.get_initializer(quant.input[3])) == chosen.width
    assert not [n for n in wrapper.graph.node if n.op_type == "Softmax"]
    edges = {e["edge"]: e for e in trained.selection["float_edges"]}
    assert edges["input"]["where"] == "MatMul_0" and str(chosen) in edges["input"]["choice"] and how in \
        edges["input"]["choice"]
    assert edges["output activation"]["where"] == "Softmax_0" and "dropped" in edges["output activation"]["choice"]

    x = data.x_test[:500].astype(np.float32)
    logits = trained.predict_quantized(x)
    xq = _quantise(x, chosen.f, chosen.width, chosen.k)
    np.testing.assert_array_equal(logits, trained.predict_quantized(xq))  # the reference quantises its input
    # the float twin (float input, softmax dropped as in the build) on the quantised input is the reference:
    # float and as-built scores differ by the input quantiser alone
    np.testing.assert_array_equal(trained.predict_float(xq), logits)
    assert not np.array_equal(trained.predict_float(x), logits)  # ...and on float inputs it does not quantise


def test_recipe_input_precision_and_keep_softmax(tmp_path: Path) -> None:
    trained = _train(_jet_recipe(tmp_path, input_precision="ap_fixed<10,4>"))
    wrapper = trained.model.wrapper
    quant = next(n for n in wrapper.graph.node if n.op_type == "Quant" and wrapper.graph.input[0].name in n.input)
    assert float(wrapper.get_initializer(quant.input[1])) == 2.0 ** -6
    assert float(wrapper.get_initializer(quant.input[3])) == 10.0
    edge = next(e for e in trained.selection["float_edges"] if e["edge"] == "input")
    assert "ap_fixed<10,4> (recipe model.input_precision)" in edge["choice"]
    x = np.linspace(-40, 40, 16 * 64, dtype=np.float32).reshape(64, 16)  # saturates at [-8, 8 - 2^-6]
    np.testing.assert_array_equal(trained.predict_quantized(x), trained.predict_quantized(_quantise(x, 6, 10, 1)))

    with pytest.raises(ConfigError) as err:
        _train(_jet_recipe(tmp_path, keep_softmax=True))
    msg = _one_line(err)
    assert "'Softmax_0' (Softmax)" in msg and "keep_softmax" in msg and "tables" in msg
