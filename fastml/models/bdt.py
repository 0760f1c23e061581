"""``kind: bdt`` — boosted decision trees: train (xgboost or scikit-learn) or load an ensemble, for conifer.

``train_bdt(cfg, data)`` returns a ``TrainedBDT`` whose ``predict_float`` is the ensemble's own margin
(xgboost ``output_margin``, sklearn ``decision_function``) with shape (n, n_outputs): one column for two
classes, one per class otherwise. ``ensemble`` is conifer's ``ensembleDict`` for the same trees. For
xgboost it is read from the model's JSON (not conifer's converter), because conifer 1.11's converter
parses thresholds from xgboost's text dump (rounded to ~8 digits, so a value exactly on a float32
threshold can take the wrong branch) and takes the logit of xgboost 3's multi-class ``base_score``
(which is already a margin), giving NaN.

``model.load`` also reads ensembles as the field ships them (``bdt_files``): conifer's own model JSON
(recognised by content; its saved precision becomes ``TrainedBDT.file_precision``, which the conifer
backend honours under ``firmware.precision: auto``) and ONNX-ML ``TreeEnsembleClassifier`` files through
conifer's ONNX converter. Their ``predict_float`` is the margin: the ensemble in double precision (conifer
JSON) or the ONNX node evaluated by ONNX-ML's rules; a post-transform (LOGISTIC) is not in the firmware.
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from ..errors import ConfigError, DataError
from .base import ModelKind, ModelSection, TrainedModel
from .bdt_files import (
    LoadedEnsemble,
    conifer_json_ensemble,
    is_conifer_json,
    not_a_model_json,
    onnx_ensemble,
    read_json,
    tool_message,
)

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig

#: xgboost objectives whose ``base_score`` is a probability (the margin is its logit).
_PROBABILITY_BASE_SCORE = ("binary:logistic", "reg:logistic")
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


class BDTSection(ModelSection):
    """Gradient-boosted trees: train with ``library`` or load a saved model from ``load``."""

    kind: Literal["bdt"] = "bdt"
    library: Literal["xgboost", "sklearn"] = "xgboost"
    n_estimators: int = Field(40, gt=0, le=5000)
    max_depth: int = Field(3, gt=0, le=16)
    learning_rate: float = Field(0.3, gt=0, le=1)
    load: str | None = None  # a saved model (xgboost, conifer JSON, ONNX-ML, sklearn), relative to the recipe
    trust_pickle: bool = False  # a pickle can run arbitrary code: loading one needs this opt-in


class BDT(ModelKind):
    name = "bdt"
    Section = BDTSection
    family = "trees"
    backends = ("conifer",)
    backend_notes: ClassVar[dict[str, str]] = {"hls4ml": "bdt needs conifer", "rtl": "bdt needs conifer"}
    summary = "boosted decision trees (xgboost or scikit-learn), conifer firmware"
    section: BDTSection

    def check_section(self, cfg: BuildConfig) -> str | None:
        if self.section.load and not (cfg.config_dir / self.section.load).resolve().is_file():
            return f"key 'model.load': file {(cfg.config_dir / self.section.load).resolve()} does not exist"
        return None

    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedBDT:
        return train_bdt(cfg, data)

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """The trained xgboost model (``model.json``), or the loaded file as given (``source_model<suffix>``): the
        project then rebuilds from what it holds."""
        import shutil

        source = Path(trained.selection.get("path", ""))
        if trained.selection.get("load") and source.is_file():
            target = model_dir / f"source_model{source.suffix.lower()}"
            shutil.copyfile(source, target)
            return [target]
        if hasattr(trained.model, "save_model"):  # xgboost
            trained.model.save_model(model_dir / "model.json")
            return [model_dir / "model.json"]
        return []


@dataclass
class TrainedBDT(TrainedModel):
    """A ``TrainedModel`` (kind "bdt") plus what the conifer backend needs.

    ``ensemble``: conifer ensembleDict; ``library``: "xgboost" | "sklearn" | the loaded file's library
    ("conifer", "onnx", or what a conifer JSON names); ``validation``: the validation split (x, y) used for
    the precision search and ``class_names`` (neither is serialised into reports); ``file_precision``: the
    conifer precision saved in a loaded model file (``input``, ``threshold``, ``weight``, ``score``: type
    strings as written there), None when the file has none; ``output_note``: what the firmware's output is
    when the file's model goes further (an ONNX post-transform), else "".
    """

    ensemble: dict[str, Any] = field(default_factory=dict)
    library: str = "xgboost"
    validation: tuple[np.ndarray, np.ndarray] | None = None
    class_names: tuple[str, ...] = ()
    file_precision: dict[str, str] | None = None
    output_note: str = ""


def train_bdt(cfg: BuildConfig, data: Dataset) -> TrainedBDT:
    """Train the ``kind: bdt`` section ``cfg.model`` on ``data`` (or load ``model.load``), ready for conversion.

    Guarantees: ``predict_float(x)`` has shape (n, 1) for two classes and (n, n_classes) otherwise;
    ``ensemble`` evaluated in double precision reproduces ``predict_float`` (checked here on a few
    training events; a disagreement raises ``DataError`` rather than building wrong firmware).
    """
    bc = cfg.model
    t0 = time.perf_counter()
    if bc.load:
        model, how = load_model(cfg), "loaded"
    elif bc.library == "xgboost":
        model, how = _fit_xgboost(cfg, data), "trained"
    else:
        model, how = _fit_sklearn(cfg, data), "trained"
    if isinstance(model, LoadedEnsemble):
        ensemble, library = model.ensemble, str(model.ensemble["library"])
    else:
        library = "xgboost" if _is_xgboost(model) else "sklearn"
        try:
            ensemble = xgboost_ensemble(model) if library == "xgboost" else sklearn_ensemble(model)
        except ConfigError as err:  # say which file, when it was loaded
            where = f"{cfg.source_path}: key 'model.load': {bc.load}: " if bc.load else ""
            raise ConfigError(f"{where}{err}") from None
    if ensemble["n_features"] != data.n_features:
        raise ConfigError(f"{cfg.source_path}: key 'model.load': the model has {ensemble['n_features']} features, "
                          f"the data has {data.n_features}")
    n_classes = max(int(ensemble["n_classes"]), 2)
    if n_classes != data.n_classes:
        raise ConfigError(f"{cfg.source_path}: key 'model.load': the model has {n_classes} classes, "
                          f"the data has {data.n_classes}")
    predict = margin_fn(model)
    _check_ensemble(ensemble, predict, data.x_train[:256])
    selection: dict[str, Any] = {
        "library": library, "source": how, "load": bc.load, "n_trees": int(ensemble["n_trees"]),
        "max_depth": int(ensemble["max_depth"]),
        "n_nodes": int(sum(len(t["feature"]) for r in ensemble["trees"] for t in r)),
    }
    if not bc.load:
        selection.update(n_estimators=bc.n_estimators, learning_rate=bc.learning_rate)
    else:
        selection["path"] = str((cfg.config_dir / bc.load).resolve())
    loaded = model if isinstance(model, LoadedEnsemble) else None
    if loaded:
        selection.update(form=loaded.form, **loaded.notes)
        if loaded.precision:
            selection["file_precision"] = loaded.precision
    return TrainedBDT(kind="bdt", family="trees", model=model, predict_quantized=predict, predict_float=predict,
                      n_classes=data.n_classes, selection=selection, wall_s=time.perf_counter() - t0,
                      ensemble=ensemble, library=library, validation=(data.x_val, data.y_val),
                      class_names=tuple(data.class_names), file_precision=loaded.precision if loaded else None,
                      output_note=loaded.notes.get("output", "") if loaded else "")


def _fit_xgboost(cfg: BuildConfig, data: Dataset) -> Any:
    import xgboost as xgb

    bc = cfg.model
    binary = data.n_classes == 2
    params = {"objective": "binary:logistic" if binary else "multi:softprob", "max_depth": bc.max_depth,
              "eta": bc.learning_rate, "tree_method": "hist", "seed": cfg.train.seed, "nthread": 2}
    if not binary:
        params["num_class"] = data.n_classes
    dtrain = xgb.DMatrix(data.x_train, label=data.y_train)
    return xgb.train(params, dtrain, num_boost_round=bc.n_estimators)


def _fit_sklearn(cfg: BuildConfig, data: Dataset) -> Any:
    # conifer 1.11 converts GradientBoostingClassifier (its converter reads estimators_, which
    # HistGradientBoostingClassifier does not have).
    from sklearn.ensemble import GradientBoostingClassifier

    bc = cfg.model
    model = GradientBoostingClassifier(n_estimators=bc.n_estimators, max_depth=bc.max_depth,
                                       learning_rate=bc.learning_rate, random_state=cfg.train.seed)
    return model.fit(data.x_train, data.y_train)


def load_model(cfg: BuildConfig) -> Any:
    """Read ``model.load``: ``.json`` (xgboost or conifer model JSON, told apart by content), ``.ubj``
    (xgboost), ``.onnx`` (ONNX-ML tree ensemble, a ``LoadedEnsemble``), ``.skops``, or a pickle if
    ``trust_pickle``.

    Raises ``ConfigError`` (one line naming the key and the file) for an unknown suffix, an untrusted pickle,
    or a file that does not hold a supported ensemble; never a third-party traceback or log prefix.
    """
    bc = cfg.model
    assert bc.load is not None
    path = (cfg.config_dir / bc.load).resolve()
    where = f"{cfg.source_path}: key 'model.load'"
    if not path.is_file():
        raise ConfigError(f"{where}: file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        doc = read_json(path, where)
        if is_conifer_json(doc):
            return conifer_json_ensemble(doc, path, where)
        if not (isinstance(doc, dict) and "learner" in doc):
            raise not_a_model_json(path, where, doc)
    if suffix in (".json", ".ubj"):
        import xgboost as xgb

        try:
            return xgb.Booster(model_file=str(path))
        except xgb.core.XGBoostError as err:
            raise ConfigError(f"{where}: {path.name} is not a readable xgboost model ({tool_message(err)})") from None
    if suffix == ".onnx":
        return onnx_ensemble(path, where)
    if suffix in _PICKLE_SUFFIXES:
        if not bc.trust_pickle:
            raise ConfigError(f"{where}: refusing to load pickle {path.name} (a pickle can run arbitrary code); "
                              "set model.trust_pickle: true if you trust its origin, or save it as .skops/.json")
        try:
            with path.open("rb") as f:
                model = pickle.load(f)  # the user opted in with trust_pickle
        except Exception as err:  # a truncated file, a class from a package not installed, ...
            raise ConfigError(f"{where}: {path.name} could not be unpickled ({type(err).__name__}: "
                              f"{tool_message(err)})") from None
    elif suffix == ".skops":
        model = _load_skops(path, where)
    else:
        raise ConfigError(f"{where}: unsupported model file {path.name}; expected .json (xgboost or conifer model "
                          "JSON), .ubj (xgboost), .onnx (ONNX-ML tree ensemble), .skops, or .pkl/.pickle/.joblib "
                          "(with trust_pickle: true)")
    if not (_is_xgboost(model) or type(model).__name__ == "GradientBoostingClassifier"):
        raise ConfigError(f"{where}: {path.name} holds a {type(model).__name__}; expected an xgboost model "
                          "or a scikit-learn GradientBoostingClassifier")
    return model


def _load_skops(path: Path, where: str) -> Any:
    try:
        import skops.io as sio
    except ImportError:
        raise ConfigError(f"{where}: {path.name} needs the 'skops' package, which is not installed") from None
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as err:  # not a skops archive
        raise ConfigError(f"{where}: {path.name} is not a readable skops file ({type(err).__name__}: "
                          f"{tool_message(err)})") from None
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy."))]
    if foreign:
        raise ConfigError(f"{where}: {path.name} contains types outside scikit-learn/numpy: {', '.join(foreign)}")
    return sio.load(path, trusted=untrusted)


def _is_xgboost(model: Any) -> bool:
    return type(model).__module__.startswith("xgboost")


def _booster(model: Any) -> Any:
    return model.get_booster() if hasattr(model, "get_booster") else model


def margin_fn(model: Any) -> Any:
    """``x -> margins`` of shape (n, n_outputs) for an xgboost or sklearn ensemble or a ``LoadedEnsemble``."""
    if isinstance(model, LoadedEnsemble):
        evaluate = model.margin or TreeEnsemble(model.ensemble).float_decision_function

        def predict_loaded(x: np.ndarray) -> np.ndarray:
            return np.asarray(evaluate(np.asarray(x)), np.float64).reshape(len(x), -1)

        return predict_loaded
    if _is_xgboost(model):
        import xgboost as xgb

        booster = _booster(model)

        def predict_xgb(x: np.ndarray) -> np.ndarray:
            out = booster.predict(xgb.DMatrix(np.asarray(x, np.float32)), output_margin=True)
            return np.asarray(out, np.float64).reshape(len(x), -1)

        return predict_xgb

    def predict_sklearn(x: np.ndarray) -> np.ndarray:
        return np.asarray(model.decision_function(np.asarray(x, np.float32)), np.float64).reshape(len(x), -1)

    return predict_sklearn


def xgboost_ensemble(model: Any) -> dict[str, Any]:
    """conifer ensembleDict of an xgboost gbtree model, read from its JSON with exact float32 values.

    Node order is xgboost's node id; split ``x < threshold`` goes to the left ("yes") child, as in
    xgboost. Raises ``ConfigError`` for what conifer cannot express (categorical splits, dart, multi-target).
    """
    booster = _booster(model)
    doc = json.loads(booster.save_raw("json"))
    learner = doc["learner"]
    gb = learner["gradient_booster"]
    if gb.get("name") != "gbtree":
        raise ConfigError(f"xgboost booster {gb.get('name')!r} is not supported (expected gbtree)")
    params = learner["learner_model_param"]
    n_targets = int(params.get("num_target", "1"))
    num_class = int(params["num_class"])
    n_features = int(params["num_feature"])
    if n_targets != 1:
        raise ConfigError("multi-target xgboost models are not supported by conifer")
    n_outputs = max(num_class, 1)
    trees_json = gb["model"]["trees"]
    tree_info = gb["model"]["tree_info"]
    rounds: list[list[dict[str, Any]]] = []
    for start in range(0, len(trees_json), n_outputs):
        group = trees_json[start:start + n_outputs]
        if [tree_info[start + i] for i in range(len(group))] != list(range(n_outputs)):
            raise ConfigError("xgboost model trees are not grouped one per class per round (unsupported layout)")
        rounds.append([_xgb_tree(t, n_features) for t in group])
    objective = learner["objective"]["name"]
    base = np.asarray([float(v) for v in str(params["base_score"]).strip("[]").split(",")], np.float32)
    base = base.astype(np.float64)
    if objective in _PROBABILITY_BASE_SCORE:
        base = np.log(base / (1.0 - base))
    if len(base) == 1:
        base = np.repeat(base, n_outputs)
    depth = max(_depth(t) for r in rounds for t in r)
    return {"max_depth": depth, "n_trees": len(rounds), "n_classes": 2 if num_class == 0 else num_class,
            "n_features": n_features, "trees": rounds, "init_predict": [float(b) for b in base], "norm": 1,
            "library": "xgboost", "splitting_convention": "<",
            "feature_map": {f"f{i}": i for i in range(n_features)}}


def _xgb_tree(tree: dict[str, Any], n_features: int) -> dict[str, Any]:
    if any(int(s) != 0 for s in tree.get("split_type", [])):
        raise ConfigError("xgboost categorical splits are not supported by conifer")
    left = [int(v) for v in tree["left_children"]]
    right = [int(v) for v in tree["right_children"]]
    # JSON holds float32 values as shortest decimal strings: go through float32 to recover them exactly.
    cond = np.asarray(tree["split_conditions"], np.float32).astype(np.float64)
    leaf = [lc == -1 for lc in left]
    feature = [-2 if is_leaf else int(f) for is_leaf, f in zip(leaf, tree["split_indices"], strict=True)]
    weight = [[0] * n_features if f < 0 else [int(i == f) for i in range(n_features)] for f in feature]
    return {"feature": feature, "threshold": [0.0 if lf else float(c) for lf, c in zip(leaf, cond, strict=True)],
            "value": [float(c) if lf else 0.0 for lf, c in zip(leaf, cond, strict=True)], "weight": weight,
            "children_left": left, "children_right": right}


def _depth(tree: dict[str, Any]) -> int:
    def walk(node: int) -> int:
        if tree["children_left"][node] == -1:
            return 0
        return 1 + max(walk(tree["children_left"][node]), walk(tree["children_right"][node]))

    return walk(0)


def sklearn_ensemble(model: Any) -> dict[str, Any]:
    """conifer ensembleDict of a fitted ``GradientBoostingClassifier`` (conifer's own converter)."""
    from conifer.converters import get_converter

    ensemble = get_converter("sklearn").convert(model)
    # conifer copies bdt.max_depth (the hyper-parameter); the firmware only needs the actual depth.
    ensemble["max_depth"] = max(_depth(t) for r in ensemble["trees"] for t in r)
    ensemble["n_classes"] = int(ensemble["n_classes"])
    ensemble["init_predict"] = [float(v) for v in ensemble["init_predict"]]
    return ensemble


def _check_ensemble(ensemble: dict[str, Any], predict: Any, x: np.ndarray) -> None:
    ref = TreeEnsemble(ensemble).float_decision_function(x)
    margin = predict(x)
    # xgboost sums in float32: allow rounding, but not a different tree or base score.
    if ref.shape != margin.shape or not np.allclose(ref, margin, rtol=1e-4, atol=1e-4):
        worst = float(np.abs(ref - margin).max()) if ref.shape == margin.shape else float("nan")
        raise DataError(f"the tree description read from the {ensemble['library']} model does not reproduce its "
                        f"predictions (max difference {worst:.3g}, shapes {ref.shape} vs {margin.shape})")


class TreeEnsemble:
    """A tree ensemble as arrays (one row per tree), evaluated in double precision; vectorised over events.

    ``ensemble`` is conifer's ``ensembleDict`` (keys ``trees`` [round][class] with ``feature``,
    ``threshold``, ``value``, ``children_left``, ``children_right``, ``weight``; ``init_predict``, ``norm``,
    ``n_classes``, ``splitting_convention``); only axis-aligned splits are accepted (``ValueError``).
    """

    def __init__(self, ensemble: dict[str, Any]) -> None:
        trees = [tree for round_ in ensemble["trees"] for tree in round_]
        self.n_outputs = 1 if int(ensemble["n_classes"]) == 2 else int(ensemble["n_classes"])
        self.tree_class = np.array([c for round_ in ensemble["trees"] for c in range(len(round_))], np.int64)
        n_nodes = max(len(t["feature"]) for t in trees)
        shape = (len(trees), n_nodes)
        self.feature = np.full(shape, -2, np.int64)
        self.left = np.full(shape, -1, np.int64)
        self.right = np.full(shape, -1, np.int64)
        self.threshold = np.zeros(shape, np.float64)
        self.value = np.zeros(shape, np.float64)
        for i, t in enumerate(trees):
            n = len(t["feature"])
            self.feature[i, :n] = t["feature"]
            self.left[i, :n] = t["children_left"]
            self.right[i, :n] = t["children_right"]
            self.threshold[i, :n] = t["threshold"]
            self.value[i, :n] = t["value"]
            for node, weights in enumerate(t["weight"]):
                w = np.asarray(weights, np.float64)
                f = t["feature"][node]
                if f >= 0 and not (np.count_nonzero(w) == 1 and w[f] == 1.0):
                    raise ValueError(f"tree {i} node {node}: only axis-aligned splits (one-hot weights) are supported")
        self.is_leaf = self.left < 0
        self.feature = np.where(self.is_leaf, 0, self.feature)  # any valid column; leaves never compare
        self.init_predict = np.asarray(ensemble["init_predict"], np.float64)[: self.n_outputs]
        self.norm = float(ensemble["norm"])
        self.splitting = str(ensemble["splitting_convention"])
        if self.splitting not in ("<", "<="):
            raise ValueError(f"unknown splitting convention {self.splitting!r}")
        self.depth = _max_depth(self.left, self.right)

    @property
    def n_trees(self) -> int:
        return len(self.tree_class)

    def float_decision_function(self, x: np.ndarray) -> np.ndarray:
        """The same trees in double precision (no quantisation), shape (n, n_outputs)."""
        x = np.asarray(x, np.float64)
        n = len(x)
        rows = np.arange(n)
        total = np.tile(self.init_predict, (n, 1))
        for i in range(self.n_trees):
            node = np.zeros(n, np.int64)
            for _ in range(self.depth):
                a = x[rows, self.feature[i][node]]
                go_left = a < self.threshold[i][node] if self.splitting == "<" else a <= self.threshold[i][node]
                node = np.where(self.is_leaf[i][node], node, np.where(go_left, self.left[i][node], self.right[i][node]))
            total[:, self.tree_class[i]] += self.value[i][node]
        return total * self.norm

    def max_abs_threshold(self) -> float:
        return float(np.abs(np.where(self.is_leaf, 0.0, self.threshold)).max(initial=0.0))

    def max_abs_leaf(self) -> float:
        return float(np.abs(np.where(self.is_leaf, self.value, 0.0)).max(initial=0.0))


def _max_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Deepest leaf over all trees (number of comparisons on the longest path)."""
    deepest = 0
    for lt, rt in zip(left, right, strict=True):
        frontier, depth = [0], 0
        while True:
            children = [c for n in frontier for c in (lt[n], rt[n]) if c >= 0]
            if not children:
                break
            frontier, depth = children, depth + 1
        deepest = max(deepest, depth)
    return deepest
