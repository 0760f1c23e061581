"""fastml.models.keras_files / hgq1_proxy on the peer-model corpus (../shared/peer-models): every Keras file form
finds its importer from its content, normalises to what ``read_h5`` gives, and rebuilds to the published
arithmetic (checked against NumPy forward passes of the files' own weights)."""

from __future__ import annotations

import copy
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from fastml.errors import ConfigError

PEERS = Path(__file__).resolve().parents[3] / ".." / "shared" / "peer-models"


@pytest.fixture(scope="module")
def peers() -> Path:
    if not PEERS.is_dir():
        pytest.skip("../shared/peer-models not present")
    return PEERS.resolve()


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


@pytest.mark.parametrize("file, form, origin, files", [
    ("hgq1_jet_classifier/hgq_jet_classifier.h5", "hgq1_proxy", "HGQ 1 proxy model (Keras 2 .h5)", 1),
    ("qkeras_3layer/QKERAS_3layer.h5", "qkeras", "QKeras model (Keras 2 .h5)", 1),
    ("qkeras_3layer/qkeras_3layer.json", "qkeras", "QKeras model (Keras 2 json + weights)", 2),
    ("qkeras_3layer/qkeras_3layer_weights.h5", "qkeras", "QKeras model (Keras 2 json + weights)", 2),
    ("qkeras_v3_3layer/qkeras-v3_3layer.keras", "qkeras", "QKeras v3 model (Keras 3 .keras archive)", 1),
    ("float_keras_3layer/KERAS_3layer_weights.h5", "keras2_float", "float Keras 2 model (json + weights)", 2),
    ("float_keras_3layer/KERAS_3layer.json", "keras2_float", "float Keras 2 model (json + weights)", 2),
    ("float_keras_3layer/KERAS_3layer.keras", "keras3", "Keras 3 .keras archive", 1),
])
def test_each_file_form_finds_its_importer(peers: Path, file: str, form: str, origin: str, files: int) -> None:
    from fastml.models.keras_files import read_keras_file

    source = read_keras_file(peers / file)
    assert (source.form, source.origin, len(source.files)) == (form, origin, files)
    if files == 2:  # hls4ml's pair, whichever file was named: the config first
        assert source.files[0].suffix == ".json" and source.files[1].name.endswith("_weights.h5")


def _parsed(source) -> list[tuple[str, str, list]]:
    """(class, name, parsed quantisers) per layer of a normal-form source."""
    from fastml.models.qkeras_model import parse_quantizer

    out = []
    for layer in source.config["config"]["layers"][1:]:
        c = layer["config"]
        qs = [parse_quantizer(c[role], "t", c["name"], role) for role in ("kernel_quantizer", "bias_quantizer")
              if role in c]
        if layer["class_name"] == "QActivation":
            qs.append(parse_quantizer(c["activation"], "t", c["name"], "activation"))
        out.append((layer["class_name"], c["name"], qs))
    return out


def test_json_weights_pair_normalises_to_what_read_h5_gives_for_the_full_h5(peers: Path) -> None:
    """qkeras_3layer: the json + weights pair (Keras 2.4) and the full .h5 (Keras 2.2) are the same architecture;
    their normal forms have the same layers and quantisers, and the pair's weights are the weights file's."""
    import h5py

    from fastml.models.keras_files import read_keras_file
    from fastml.models.qkeras_model import FixedQ, read_h5

    pair = read_keras_file(peers / "qkeras_3layer" / "qkeras_3layer_weights.h5")
    full_config, full_weights = read_h5(peers / "qkeras_3layer" / "QKERAS_3layer.h5")
    full = read_keras_file(peers / "qkeras_3layer" / "QKERAS_3layer.h5")
    assert full.config == full_config and set(full.weights) == set(full_weights)  # a full .h5: read_h5's form
    assert _parsed(pair) == _parsed(full)
    assert _parsed(pair)[0][2] == [FixedQ(1, 0, 5, "SAT"), FixedQ(1, 0, 5, "SAT")]  # quantized_bits(6, 0)
    assert _parsed(pair)[1][2] == [FixedQ(0, 0, 6, "SAT")]  # quantized_relu(6)
    with h5py.File(peers / "qkeras_3layer" / "qkeras_3layer_weights.h5") as f:
        for layer in ("fc1", "fc2", "fc3", "output"):
            assert [a.shape for a in pair.weights[layer]] == [a.shape for a in full_weights[layer]]
            assert np.array_equal(pair.weights[layer].named("kernel"), f[layer][f"{layer}/kernel:0"][()])
            assert np.array_equal(pair.weights[layer].named("bias"), f[layer][f"{layer}/bias:0"][()])


def _rewrite_archive(src: Path, dst: Path, config=None, strip_weight_names: bool = False) -> Path:
    """A copy of a .keras archive with another config.json, or without the layer names in its weights file."""
    import h5py

    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    if config is not None:
        members["config.json"] = json.dumps(config).encode()
    if strip_weight_names:
        buf = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buf, "r+") as f:
            for group in f["layers"]:
                f["layers"][group]["vars"].attrs.pop("name", None)
        members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return dst


def test_qkeras_v3_archive_normalises_to_the_keras2_form(peers: Path, tmp_path: Path) -> None:
    """The QKeras v3 archive holds the same network as qkeras_3layer's json + weights: the same layers,
    quantisers (Keras 3 serialised dicts parsed as Keras 2's) and weights, also when its weights file does not
    name the layers (older Keras 3: groups matched by class name and order)."""
    from fastml.models.keras_files import read_keras_file

    v3 = read_keras_file(peers / "qkeras_v3_3layer" / "qkeras-v3_3layer.keras")
    pair = read_keras_file(peers / "qkeras_3layer" / "qkeras_3layer.json")
    assert _parsed(v3) == _parsed(pair)
    assert v3.config["config"]["layers"][0]["config"]["batch_shape"] == [None, 16]
    unnamed = read_keras_file(_rewrite_archive(peers / "qkeras_v3_3layer" / "qkeras-v3_3layer.keras",
                                               tmp_path / "unnamed.keras", strip_weight_names=True))
    for source in (v3, unnamed):
        for layer in ("fc1", "fc2", "fc3", "output"):
            assert source.weights[layer].names == [f"{layer}/kernel:0", f"{layer}/bias:0"]
            assert all(np.array_equal(a, b) for a, b in zip(source.weights[layer], pair.weights[layer], strict=True))


def _qkeras_numpy(weights, x: np.ndarray, in_f: int, in_i: int) -> np.ndarray:
    """QKeras 0.9 arithmetic of the 3-layer tagger, in NumPy: quantized_bits(6, 0, alpha=1) weights and biases,
    quantized_relu(6) activations, an input quantized_bits(1 + in_i + in_f, in_i) (no final softmax)."""
    def q(v, f, lo, hi):
        return np.clip(np.round(np.asarray(v, np.float64) * 2.0 ** f), lo, hi) / 2.0 ** f

    h = q(x, in_f, -(2 ** (in_i + in_f)), 2 ** (in_i + in_f) - 1)
    for n, layer in enumerate(("fc1", "fc2", "fc3", "output")):
        w = weights[layer]
        h = h @ q(w.named("kernel"), 5, -32, 31) + q(w.named("bias"), 5, -32, 31)
        if n < 3:
            h = q(h, 6, 0, 63)
    return h


def test_qkeras_v3_file_rebuilds_to_qkeras_arithmetic(peers: Path) -> None:
    """The normalised QKeras v3 file through rebuild_hgq (with an input quantiser put in front and the final
    softmax left out, in memory) computes what QKeras computes, per a NumPy forward pass of its weights."""
    from fastml.models.keras_files import read_keras_file
    from fastml.models.qkeras_model import rebuild_hgq

    source = read_keras_file(peers / "qkeras_v3_3layer" / "qkeras-v3_3layer.keras")
    config = copy.deepcopy(source.config)
    layers = config["config"]["layers"]
    assert layers[-1]["class_name"] == "Activation"  # the published softmax
    input_q = {"class_name": "QActivation", "name": "in_q",
               "config": {"name": "in_q", "activation": "quantized_bits(8, 3, alpha=1)"}}
    layers[1:] = [input_q, *layers[1:-1]]
    model, _ = rebuild_hgq(config, source.weights, "v3")
    x = np.random.default_rng(1).normal(size=(4000, 16)).astype(np.float32) * 2
    y = np.asarray(model(x), np.float64)
    assert int(np.count_nonzero(y != _qkeras_numpy(source.weights, x, in_f=4, in_i=3))) == 0


def _keras2_numpy(config: dict, weights, x: np.ndarray) -> np.ndarray:
    """A float Keras 2 chain (Dense, BatchNormalization, Activation) in NumPy, float64, softmax at the end."""
    def act(name, v):
        if name == "relu":
            return np.maximum(v, 0)
        if name == "softmax":
            e = np.exp(v - v.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)
        assert name == "linear"
        return v

    h = x.astype(np.float64)
    for layer in config["config"]["layers"][1:]:
        c, w = layer["config"], weights.get(layer["config"]["name"])
        if layer["class_name"] == "Dense":
            h = act(c["activation"], h @ w.named("kernel") + w.named("bias"))
        elif layer["class_name"] == "BatchNormalization":
            h = (h - w.named("moving_mean")) / np.sqrt(w.named("moving_variance") + c["epsilon"]) * w.named(
                "gamma") + w.named("beta")
        elif layer["class_name"] == "Activation":
            h = act(c["activation"], h)
    return h


@pytest.mark.parametrize("stem", ["float_keras_3layer/KERAS_3layer", "float_keras_3layer_bn/KERAS_3layer_batch_norm"])
def test_float_keras2_pair_rebuilds_the_published_network(peers: Path, stem: str) -> None:
    """Keras 2.0 json + weights (Dense, BatchNormalization with gamma and beta, softmax) rebuilt in Keras 3 gives
    the NumPy forward pass of the file's weights."""
    from fastml.models.keras_files import build_source, read_keras_file

    source = read_keras_file(peers / f"{stem}_weights.h5")
    model, notes = build_source(source, "t")
    assert "float Keras 2 model" in notes[0]
    x = np.random.default_rng(2).normal(size=(1000, 16)).astype(np.float32)
    y = np.asarray(model(x), np.float64)
    assert np.abs(y - _keras2_numpy(source.config, source.weights, x)).max() < 1e-5
    if "batch_norm" in stem:  # both gamma and beta came from the file (neither left at 1 / 0)
        bn = model.get_layer("bn1")
        assert np.array_equal(np.asarray(bn.gamma), source.weights["bn1"].named("gamma"))
        assert np.array_equal(np.asarray(bn.beta), source.weights["bn1"].named("beta"))
        assert not np.allclose(np.asarray(bn.gamma), 1.0) and not np.allclose(np.asarray(bn.beta), 0.0)


def test_a_pair_file_alone_names_the_partner_looked_for(peers: Path, tmp_path: Path) -> None:
    from fastml.models.keras_files import read_keras_file

    shutil.copyfile(peers / "qkeras_3layer" / "qkeras_3layer_weights.h5", tmp_path / "tagger_weights.h5")
    shutil.copyfile(peers / "qkeras_3layer" / "qkeras_3layer.json", tmp_path / "other.json")
    with pytest.raises(ConfigError) as err:
        read_keras_file(tmp_path / "tagger_weights.h5")
    assert "weights only" in _one_line(err) and "tagger.json" in str(err.value)
    with pytest.raises(ConfigError) as err:
        read_keras_file(tmp_path / "other.json")
    assert "without weights" in _one_line(err) and "other_weights.h5" in str(err.value)


def test_a_pair_file_alone_fails_validate_naming_the_partner(peers: Path, tmp_path: Path) -> None:
    import yaml

    from fastml.recipe import load_config

    shutil.copyfile(peers / "qkeras_3layer" / "qkeras_3layer_weights.h5", tmp_path / "tagger_weights.h5")
    for kind in ("keras", "qkeras"):
        recipe = tmp_path / f"{kind}.yaml"
        recipe.write_text(yaml.safe_dump({"name": "t", "data": {"source": "builtin:jets_hlf"},
                                          "model": {"kind": kind, "path": "tagger_weights.h5"},
                                          "firmware": {"backend": "hls4ml"}}))
        with pytest.raises(ConfigError) as err:
            load_config(recipe)
        assert "model.path" in _one_line(err) and "tagger.json" in str(err.value)


def test_a_layer_fastml_cannot_import_is_named_with_class_and_origin(peers: Path, tmp_path: Path) -> None:
    from fastml.models.keras_files import build_source, read_keras_file

    archive = peers / "qkeras_v3_3layer" / "qkeras-v3_3layer.keras"
    with zipfile.ZipFile(archive) as z:
        config = json.loads(z.read("config.json"))
    config["config"]["layers"][1]["class_name"] = "QSimpleRNN"
    with pytest.raises(ConfigError) as err:
        read_keras_file(_rewrite_archive(archive, tmp_path / "rnn.keras", config=config))
    assert "QKeras v3 layer 'fc1' (qkeras.qlayers.QSimpleRNN) is not a layer fastml imports" in _one_line(err)

    float_archive = peers / "float_keras_3layer" / "KERAS_3layer.keras"
    with zipfile.ZipFile(float_archive) as z:
        config = json.loads(z.read("config.json"))
    config["config"]["layers"][1]["module"] = "mypackage.layers"
    with pytest.raises(ConfigError) as err:
        read_keras_file(_rewrite_archive(float_archive, tmp_path / "custom.keras", config=config))
    assert "custom layer from package 'mypackage'" in _one_line(err)

    source = read_keras_file(peers / "float_keras_3layer" / "KERAS_3layer.json")
    source.config["config"]["layers"][2]["class_name"] = "LSTM"
    with pytest.raises(ConfigError) as err:
        build_source(source, "t")
    assert "Keras 2 layer 'fc2_relu' (LSTM) is not a layer fastml rebuilds" in _one_line(err)


# ------------------------------------------------------------------------------------------ HGQ 1 proxy


def _hgq1_numpy(source, x: np.ndarray) -> tuple[np.ndarray, int]:
    """HGQ 1's proxy arithmetic in NumPy (``gfixed_quantizer``: SAT(RND(x 2^f)) / 2^f, 0 where bits == 0, f =
    bits - integers), and how many values wrapped around."""
    from fastml.models.hgq1_proxy import _named

    h, wrapped = x.astype(np.float64), 0
    for layer in source.config["config"]["layers"][1:]:
        c, w = layer["config"], source.weights.get(layer["config"]["name"])
        if layer["class_name"] == "FixedPointQuantizer":
            k, b, i = (np.asarray(_named(w, v), np.float64) for v in ("keep_negative", "bits", "integers"))
            s = h * 2.0 ** (b - i)
            s = np.floor(s) if c["RND"] == "TRN" else np.floor(s + 0.5)
            high, low = 2.0 ** (b - k) - 1, -(2.0 ** (b - k)) * k
            assert c["SAT"] == "WRAP"
            wrapped += int(np.count_nonzero(((s > high) | (s < low)) & (b > 0)))
            h = (np.mod(s - low, high - low + 1) + low) / 2.0 ** (b - i) * (b != 0)
        elif layer["class_name"] == "Dense":
            h = h @ _named(w, "kernel").astype(np.float64) + _named(w, "bias")
        elif layer["class_name"] == "Activation":
            assert c["activation"] == "relu"
            h = np.maximum(h, 0)
    return h, wrapped


def test_hgq1_proxy_rebuild_computes_what_hgq1_computes(peers: Path) -> None:
    """Per-element bits (zero-bit elements included) and TRN / WRAP carried exactly: the rebuilt HGQ2 model equals
    HGQ 1's quantiser arithmetic on inputs wide enough to wrap around."""
    from fastml.models.keras_files import build_source, read_keras_file

    source = read_keras_file(peers / "hgq1_jet_classifier" / "hgq_jet_classifier.h5")
    model, notes = build_source(source, "t")
    assert any("TRN, WRAP" in n for n in notes) and any("0..10 bits" in n for n in notes)
    x = np.random.default_rng(3).normal(size=(5000, 16)).astype(np.float32) * 4
    expected, wrapped = _hgq1_numpy(source, x)
    assert wrapped > 0  # the check exercises the overflow mode, not only in-range values
    assert int(np.count_nonzero(np.asarray(model(x), np.float64) != expected)) == 0


@pytest.mark.parametrize("change, expected", [
    ({"RND": "RND_ZERO"}, "rounds with RND_ZERO and overflows with WRAP"),
    ({"SAT": "SAT_ZERO"}, "rounds with TRN and overflows with SAT_ZERO"),
])
def test_hgq1_modes_fastml_does_not_carry_are_refused_naming_the_quantiser(peers: Path, change: dict,
                                                                           expected: str) -> None:
    from fastml.models.hgq1_proxy import rebuild_proxy
    from fastml.models.keras_files import read_keras_file

    source = read_keras_file(peers / "hgq1_jet_classifier" / "hgq_jet_classifier.h5")
    config = copy.deepcopy(source.config)
    config["config"]["layers"][1]["config"].update(change)
    with pytest.raises(ConfigError) as err:
        rebuild_proxy(config, source.weights, "t")
    assert "HGQ 1 proxy layer 'inp_q_quantizer' (FixedPointQuantizer)" in _one_line(err) and expected in str(err.value)


def test_hgq1_proxy_kif_follows_hgq1_counting() -> None:
    """bits and integers count the sign: fixed<6,4> is k=1, i=3, f=2; ufixed<10,8> is k=0, i=8, f=2; an element
    with no bits is k=i=f=0 whatever its integers say."""
    from fastml.models.hgq1_proxy import proxy_kif
    from fastml.models.qkeras_model import LayerWeights

    arrays = [np.array([[1, 0, 1]], np.int8), np.array([[6, 10, 0]], np.int8), np.array([[4, 8, 3]], np.int8)]
    w = LayerWeights(arrays, ["keep_negative:0", "bits:0", "integers:0"])
    k, i, f = proxy_kif("t", "q", {}, w, (3,))
    assert (k.tolist(), i.tolist(), f.tolist()) == ([[1, 0, 0]], [[3, 8, 0]], [[2, 2, 0]])


# ------------------------------------------------------------------------------------------ the kinds


def _train(tmp_path: Path, model: dict):
    import yaml

    from fastml.data import load_data
    from fastml.pipeline import train
    from fastml.recipe import load_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "data": {"source": "builtin:jets_hlf"}, "model": model,
                                      "firmware": {"backend": "hls4ml", "output_dir": str(tmp_path / "out")}}))
    cfg = load_config(recipe)
    return train(cfg, load_data(cfg.data, cfg.config_dir), progress=False)


def test_the_kinds_refuse_a_file_of_the_other_kind_in_one_line(peers: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        _train(tmp_path, {"kind": "keras", "path": str(peers / "qkeras_3layer" / "QKERAS_3layer.h5"),
                          "quantize": True})
    assert "QKeras model (Keras 2 .h5), already quantised" in _one_line(err)
    with pytest.raises(ConfigError) as err:
        _train(tmp_path, {"kind": "qkeras", "path": str(peers / "float_keras_3layer" / "KERAS_3layer.json")})
    assert "float Keras 2 model (json + weights) without QKeras layers" in _one_line(err)


def test_both_kinds_build_the_hgq1_proxy_as_it_is(peers: Path, tmp_path: Path) -> None:
    for kind in ("keras", "qkeras"):
        trained = _train(tmp_path, {"kind": kind, "path": str(peers / "hgq1_jet_classifier" / "hgq_jet_classifier.h5")})
        assert trained.kind == kind and trained.selection["imported_from"].startswith("HGQ 1 proxy model")
        assert [type(op).__name__ for op in trained.model.layers[1:4]] == ["Quantizer", "QDense", "Quantizer"]
