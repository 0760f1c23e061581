"""The model's input shape decides which data fits: a mismatch is one line naming both shapes (and, where the
values are as many, the numpy call that writes the file right); images and other N-d events pass where the model
takes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from fastml.data import load_data
from fastml.errors import ConfigError
from fastml.models import train
from fastml.models.imported import check_input_shape, check_io
from fastml.recipe import load_config

REPO = Path(__file__).resolve().parents[3]
QONNX_MLP = REPO / "tests" / "fixtures" / "qonnx" / "qonnx_mlp.onnx"  # takes (16,), gives (5,)


def _mismatch(model_in: tuple, data_in: tuple[int, ...]) -> str:
    with pytest.raises(ConfigError) as err:
        check_input_shape(model_in, data_in, "m.onnx")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("m.onnx: ")
    assert f"takes inputs of shape {_fmt(model_in)} per event, the data has {_fmt(data_in)}" in msg
    return msg


def _fmt(shape: tuple) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def test_same_shape_passes_for_any_rank() -> None:
    for shape in [(16,), (8, 3), (1, 28, 28), (28, 28, 1), (2, 3, 4, 5)]:
        check_input_shape(shape, shape, "m.onnx")  # raises on a mismatch


def test_flat_data_for_an_image_model_names_both_shapes_and_the_reshape() -> None:
    msg = _mismatch((1, 28, 28), (784,))
    assert "the same 784 values per event: np.reshape x to (events, 1, 28, 28)" in msg


def test_channels_last_data_for_a_channels_first_model_says_transpose() -> None:
    msg = _mismatch((3, 8, 8), (8, 8, 3))
    assert "np.transpose x to (events, 3, 8, 8)" in msg
    # one channel: the same values in the same order, so a reshape is exact
    assert "np.reshape x to (events, 1, 28, 28)" in _mismatch((1, 28, 28), (28, 28, 1))


def test_other_sizes_get_no_hint() -> None:
    assert "np." not in _mismatch((1, 28, 28), (16,))
    assert "np." not in _mismatch((None, 3), (8, 3))  # a free axis: firmware needs it fixed


class _Tensor:
    def __init__(self, *shape: int | None) -> None:
        self.shape = shape


class _Model:
    """What ``check_io`` reads of a Keras model: its input and output tensors' shapes."""

    def __init__(self, inp: tuple, out: tuple) -> None:
        self.inputs, self.outputs = [_Tensor(None, *inp)], [_Tensor(None, *out)]


def test_check_io_takes_image_inputs_and_refuses_another_shape() -> None:
    check_io(_Model((1, 4, 4), (3,)), (1, 4, 4), 3, "m.keras")
    with pytest.raises(ConfigError, match=r"m\.keras: the model takes inputs of shape \(1, 4, 4\) per event, "
                                          r"the data has \(4, 4, 1\); expected the same shape"):
        check_io(_Model((1, 4, 4), (3,)), (4, 4, 1), 3, "m.keras")


def _image_recipe(tmp_path: Path, model: dict, shape: tuple[int, ...], n_classes: int = 5) -> Path:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "images.npz", x=rng.normal(size=(200, *shape)).astype(np.float32),
             y=np.arange(200) % n_classes)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "img", "data": {"source": "images.npz", "scaling": "none"},
                                    "model": model, "firmware": {"backend": "hls4ml"}}))
    return path


def _refusal(recipe: Path) -> str:
    cfg = load_config(recipe)
    with pytest.raises(ConfigError) as err:
        train(cfg, load_data(cfg.data, cfg.config_dir), epochs=1, progress=False)
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_builtin_feature_kind_refuses_images_naming_the_shape_and_the_flat_form(tmp_path: Path) -> None:
    msg = _refusal(_image_recipe(tmp_path, {"kind": "mlp"}, (1, 4, 4)))
    assert "takes one feature vector (features,) per event" in msg and "(1, 4, 4)" in msg
    assert "write x flat as (events, 16)" in msg


def test_qonnx_kind_refuses_an_image_file_for_a_flat_graph_in_one_line(tmp_path: Path) -> None:
    """A real QONNX graph taking (16,) and a (1, 4, 4) image file: the graph's shape decides, both are named."""
    pytest.importorskip("qonnx")
    import shutil

    shutil.copyfile(QONNX_MLP, tmp_path / "mlp.onnx")
    msg = _refusal(_image_recipe(tmp_path, {"kind": "qonnx", "path": "mlp.onnx"}, (1, 4, 4)))
    assert "mlp.onnx: the model takes inputs of shape (16,) per event, the data has (1, 4, 4)" in msg
    assert "np.reshape x to (events, 16)" in msg
