"""Tree ensembles as the field ships them, read into conifer's ``ensembleDict`` for ``kind: bdt``.

- **conifer model JSON** (what ``conifer.model.save`` writes, and how CMS publishes its Level-1 BDTs): the
  ensembleDict plus the project's ``config`` / ``Config``. Recognised by its content (``trees``,
  ``n_classes``, ``n_features``), not by its suffix. Files from conifer before 1.0 (e.g. CMS's L1 track
  quality GBDT) lack ``weight``, ``library`` and ``splitting_convention``: the one-hot weights follow from
  ``feature``, and the convention is ``<=``, the default of conifer's own C++ reader (``conifer.h``:
  ``j.value("splitting_convention", "<=")``) and what conifer compared with before it had conventions.
  The precision in the file's config is returned, so the backend can honour it.
- **ONNX-ML ``TreeEnsembleClassifier``** through conifer's ONNX converter (``conifer.converters.onnx``).
  That converter (conifer 1.11) takes the trees from ``graph.node[0]``, the number of classes from a node
  *named* ``ZipMap`` at index 1 or 2, and requires ``base_values``; files as CMSSW shipped them (one
  ``TreeEnsembleClassifier`` node, no ``ZipMap``, no ``base_values``) fail there with an ``IndexError``.
  So the converter is given a two-node view of the file: the ensemble node (``base_values`` made explicit:
  ONNX's default is 0) and a ZipMap carrying its class labels. The converted trees are then checked
  against an independent evaluation of the node by ONNX-ML's rules (``OnnxTreeEnsemble``), which is also
  the float margin. The post-transform (``LOGISTIC``, ``SOFTMAX``, ...) is not in the firmware: it
  computes the margin (the sum of the leaves plus ``base_values``); the transform is monotonic, so the
  decision (margin > 0, or argmax) is the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Keys that mark a JSON document as a conifer ensembleDict.
CONIFER_KEYS = ("trees", "n_classes", "n_features")
#: The tree fields conifer needs (``weight`` is derived when a pre-1.0 file lacks it).
_TREE_KEYS = ("feature", "threshold", "value", "children_left", "children_right")
#: ONNX-ML branch modes conifer can express, and the split convention each means (true -> left child).
_ONNX_MODES = {b"BRANCH_LT": "<", b"BRANCH_LEQ": "<="}
_ONNX_REQUIRED = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                  "nodes_truenodeids", "nodes_falsenodeids", "class_treeids", "class_nodeids", "class_ids",
                  "class_weights")
_JSON_FORMS = ("expected an xgboost model (JSON with 'learner', as Booster.save_model writes) or a conifer model "
               "JSON (with 'trees', 'n_classes', 'n_features', as conifer's model.save writes)")


@dataclass
class LoadedEnsemble:
    """A tree ensemble read from a file fastml cannot retrain (conifer model JSON or ONNX-ML).

    ``ensemble`` is conifer's ensembleDict; ``form`` says what the file was; ``precision`` is the file's own
    conifer precision (keys ``input``, ``threshold``, ``weight``, ``score``, as written there) or None;
    ``notes`` go into the report (how the file was read, what the firmware outputs); ``margin`` is the
    float margin by the file's own rules (None: the ensemble evaluated in double precision).
    """

    ensemble: dict[str, Any]
    form: str
    precision: dict[str, str] | None = None
    notes: dict[str, str] = field(default_factory=dict)
    margin: Any = None


def is_conifer_json(doc: Any) -> bool:
    return isinstance(doc, dict) and all(k in doc for k in CONIFER_KEYS)


def read_json(path: Path, where: str) -> Any:
    """The JSON document in ``path``, or a one-line ``ConfigError`` naming the file and what it should be."""
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: {path.name} is not JSON ({err}); {_JSON_FORMS}") from None


def not_a_model_json(path: Path, where: str, doc: Any) -> ConfigError:
    found = f"top-level keys {', '.join(sorted(map(str, doc))[:8])}" if isinstance(doc, dict) else \
        f"a JSON {type(doc).__name__}"
    return ConfigError(f"{where}: {path.name} is neither an xgboost model nor a conifer model JSON (found {found}); "
                       f"{_JSON_FORMS}")


def tool_message(err: BaseException) -> str:
    """A third-party error as one line without its log prefix (xgboost's ``[21:19:08] /path/json.h:88: ``)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return re.sub(r"^(\[\d{1,2}:\d{2}:\d{2}\]\s*)?(\S+:\d+:\s*)?", "", text).strip() or type(err).__name__


def conifer_json_ensemble(doc: dict[str, Any], path: Path, where: str) -> LoadedEnsemble:
    """A conifer model JSON document as a ``LoadedEnsemble`` (ensembleDict checked; the file's precision kept)."""
    what = f"{where}: {path.name} (conifer model JSON)"
    try:
        n_classes, n_features = int(doc["n_classes"]), int(doc["n_features"])
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: 'n_classes' and 'n_features' must be integers, got {doc['n_classes']!r} and "
                          f"{doc['n_features']!r}") from None
    n_outputs = 1 if n_classes == 2 else n_classes
    rounds = doc["trees"]
    if not isinstance(rounds, list) or not rounds:
        raise ConfigError(f"{what}: 'trees' must be a non-empty list of rounds (one list of trees per round)")
    if "n_trees" in doc and int(doc["n_trees"]) != len(rounds):
        raise ConfigError(f"{what}: 'n_trees' is {doc['n_trees']} but 'trees' holds {len(rounds)} rounds")
    trees: list[list[dict[str, Any]]] = []
    for r, round_ in enumerate(rounds):
        if not isinstance(round_, list) or len(round_) != n_outputs:
            got = len(round_) if isinstance(round_, list) else type(round_).__name__
            raise ConfigError(f"{what}: round {r} of 'trees' must hold {n_outputs} tree(s) for {n_classes} classes, "
                              f"got {got}")
        trees.append([_conifer_tree(t, n_features, f"{what}: tree {r} (class {c})") for c, t in enumerate(round_)])
    init = doc.get("init_predict", [0.0] * n_outputs)
    init = [float(v) for v in (init if isinstance(init, list) else [init])]
    if len(init) < n_outputs:
        raise ConfigError(f"{what}: 'init_predict' has {len(init)} value(s), expected {n_outputs}")
    convention = doc.get("splitting_convention", "<=")
    if convention not in ("<", "<="):
        raise ConfigError(f"{what}: 'splitting_convention' is {convention!r}, expected '<' or '<='")
    ensemble = {"max_depth": max(tree_depth(t) for r in trees for t in r), "n_trees": len(trees),
                "n_classes": n_classes, "n_features": n_features, "trees": trees, "init_predict": init,
                "norm": float(doc.get("norm", 1)), "library": str(doc.get("library") or "conifer"),
                "splitting_convention": convention,
                "feature_map": doc.get("feature_map") or {f"f{i}": i for i in range(n_features)}}
    notes = {"read_as": "conifer model JSON" + (f" written by conifer {_version(doc)}" if _version(doc) else "")}
    if "splitting_convention" not in doc:
        notes["splitting_convention"] = ("'<=' (the file names none: conifer's own C++ reader and conifer before "
                                         "1.0 compare with '<=')")
    return LoadedEnsemble(ensemble, "conifer model JSON", _config_precision(doc), notes)


def _version(doc: dict[str, Any]) -> str | None:
    meta = doc.get("metadata")
    if isinstance(meta, list) and meta and isinstance(meta[-1], dict) and meta[-1].get("version"):
        return str(meta[-1]["version"])
    return None


def _conifer_tree(tree: Any, n_features: int, what: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        raise ConfigError(f"{what}: expected a tree (a JSON object), got a {type(tree).__name__}")
    missing = [k for k in _TREE_KEYS if k not in tree]
    if missing:
        raise ConfigError(f"{what}: lacks key(s) {', '.join(repr(k) for k in missing)}; a conifer tree has "
                          f"{', '.join(_TREE_KEYS)}")
    n = len(tree["feature"])
    if any(len(tree[k]) != n for k in _TREE_KEYS):
        raise ConfigError(f"{what}: 'feature', 'threshold', 'value', 'children_left', 'children_right' must have "
                          f"the same length ({', '.join(f'{k}: {len(tree[k])}' for k in _TREE_KEYS)})")
    feature = [int(f) for f in tree["feature"]]
    left = [int(c) for c in tree["children_left"]]
    right = [int(c) for c in tree["children_right"]]
    for node, (f, lc, rc) in enumerate(zip(feature, left, right, strict=True)):
        if (lc == -1) != (rc == -1) or (lc != -1 and not (0 < lc < n and 0 < rc < n)):
            raise ConfigError(f"{what}: node {node} has children {lc} and {rc}; expected two node indices or -1, -1")
        if f >= n_features or (lc == -1 and f >= 0):
            raise ConfigError(f"{what}: node {node} has feature {f} and children {lc}, {rc}; expected a feature "
                              f"below {n_features} with two children, or -2 (a leaf)")
    weight = tree.get("weight")
    if weight is None:  # pre-1.0 conifer: axis-aligned splits only
        weight = [[0] * n_features if f < 0 else [int(i == f) for i in range(n_features)] for f in feature]
    elif len(weight) != n or any(len(w) != n_features for w in weight):
        raise ConfigError(f"{what}: 'weight' must be {n} rows of {n_features} values")
    out = {"feature": feature, "threshold": [float(v) for v in tree["threshold"]],
           "value": [float(v) for v in tree["value"]], "weight": weight, "children_left": left,
           "children_right": right}
    return _without_padding(out)


def _without_padding(tree: dict[str, Any]) -> dict[str, Any]:
    """The tree with the nodes below its leaves removed.

    conifer before 1.0 saved trees padded to full depth: a leaf (feature -2) keeps two children holding its
    own value. Every conifer evaluator stops at feature -2 (or, in HLS, goes on to a child of equal value),
    so the padding changes nothing but would make fastml's evaluators (and conifer's own parent/depth
    bookkeeping) take the leaf for a split. Node order is kept; children are renumbered.
    """
    feature, left, right = tree["feature"], tree["children_left"], tree["children_right"]
    if all(lc == -1 for f, lc in zip(feature, left, strict=True) if f < 0):
        return tree
    keep, stack = [], [0]
    while stack:
        node = stack.pop()
        keep.append(node)
        if feature[node] >= 0:
            stack += [left[node], right[node]]
    keep.sort()
    new = {old: i for i, old in enumerate(keep)}
    out: dict[str, Any] = {k: [tree[k][i] for i in keep] for k in ("feature", "threshold", "value", "weight")}
    out["children_left"] = [new[left[i]] if feature[i] >= 0 else -1 for i in keep]
    out["children_right"] = [new[right[i]] if feature[i] >= 0 else -1 for i in keep]
    return out


def _config_precision(doc: dict[str, Any]) -> dict[str, str] | None:
    """The precision of the conifer config saved with the model, resolved as conifer's MultiPrecisionConfig does."""
    cfg = doc.get("config") if isinstance(doc.get("config"), dict) else doc.get("Config")
    if not isinstance(cfg, dict):
        return None

    def get(*keys: str) -> str | None:
        for k in keys:
            if cfg.get(k) is not None:
                return str(cfg[k])
        return None

    default = get("precision", "Precision")
    inp = get("input_precision", "InputPrecision") or default
    threshold = get("threshold_precision", "ThresholdPrecision") or inp
    weight = get("weight_precision", "WeightPrecision") or threshold
    score = get("score_precision", "ScorePrecision") or default
    if None in (inp, threshold, weight, score):
        return None
    return {"input": str(inp), "threshold": str(threshold), "weight": str(weight), "score": str(score)}


def tree_depth(tree: dict[str, Any]) -> int:
    """Comparisons on the longest root-to-leaf path."""
    depth, frontier = 0, [0]
    while True:
        children = [c for n in frontier for c in (tree["children_left"][n], tree["children_right"][n]) if c >= 0]
        if not children:
            return depth
        frontier, depth = children, depth + 1


# --- ONNX-ML ---------------------------------------------------------------------------------------------------


def onnx_ensemble(path: Path, where: str) -> LoadedEnsemble:
    """An ONNX-ML ``TreeEnsembleClassifier`` converted by conifer's ONNX converter, checked node by node."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf's DecodeError and friends; the file is not ONNX
        raise ConfigError(f"{where}: {path.name} is not a readable ONNX model ({type(err).__name__}); expected an "
                          "ONNX-ML TreeEnsembleClassifier") from None
    what = f"{where}: {path.name} (ONNX-ML)"
    trees = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    if not trees:
        ops = ", ".join(sorted({n.op_type for n in model.graph.node})) or "none"
        raise ConfigError(f"{what}: holds no TreeEnsembleClassifier node (its operators: {ops}); a network in ONNX "
                          "is model.kind qonnx")
    if len(trees) > 1 or trees[0].op_type != "TreeEnsembleClassifier":
        found = ", ".join(f"{n.name or '?'} ({n.op_type})" for n in trees)
        raise ConfigError(f"{what}: expected one TreeEnsembleClassifier node, found {found}; conifer's ONNX "
                          "converter reads TreeEnsembleClassifier only")
    node = trees[0]
    name = f"node {node.name or node.op_type!r} (TreeEnsembleClassifier)"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    graph_inputs = {i.name: i for i in model.graph.input}
    if node.input[0] not in graph_inputs:
        feeder = next((f"{n.name or '?'} ({n.op_type})" for n in model.graph.node if node.input[0] in n.output), "?")
        raise ConfigError(f"{what}: {name} reads {node.input[0]!r}, computed by node {feeder}, not the graph's "
                          "input; the firmware would skip that step (export the trees alone)")
    missing = [k for k in _ONNX_REQUIRED if k not in attrs]
    if missing:
        tensors = [k for k in missing if f"{k}_as_tensor" in attrs]
        why = (f" ({', '.join(k + '_as_tensor' for k in tensors)}: double precision, which conifer's ONNX converter "
               "does not read)") if tensors else ""
        raise ConfigError(f"{what}: {name} lacks attribute(s) {', '.join(missing)}{why}")
    labels = list(attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or [])
    if len(labels) < 2:
        raise ConfigError(f"{what}: {name} has {len(labels)} class label(s); expected a classifier of 2 or more")
    modes = {bytes(m) for m in attrs["nodes_modes"]} - {b"LEAF"}
    if len(modes) != 1 or next(iter(modes)) not in _ONNX_MODES:
        shown = ", ".join(sorted(m.decode() for m in modes)) or "none"
        raise ConfigError(f"{what}: {name} splits with {shown}; conifer takes one of BRANCH_LT ('<') or "
                          "BRANCH_LEQ ('<=') for every node")
    post = attrs.get("post_transform", b"NONE")
    post = post.decode() if isinstance(post, bytes) else str(post)
    n_outputs = 1 if len(labels) == 2 else len(labels)
    n_features = _onnx_n_features(graph_inputs[node.input[0]], attrs)
    float32_input = graph_inputs[node.input[0]].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    reference = OnnxTreeEnsemble(attrs, n_outputs, float32_input, f"{what}: {name}")

    # conifer's converter reads graph.node[0] and a node named 'ZipMap' after it, and needs base_values.
    view_attrs = dict(attrs)
    view_attrs.setdefault("base_values", [0.0] * n_outputs)
    ensemble_node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"],
                                     domain="ai.onnx.ml", name=node.name or "TreeEnsembleClassifier", **view_attrs)
    zipmap = helper.make_node("ZipMap", ["probabilities"], ["classes"], domain="ai.onnx.ml", name="ZipMap",
                              classlabels_int64s=list(range(len(labels))))
    x_info = helper.make_tensor_value_info("X", onnx.TensorProto.FLOAT, [1, n_features])
    view = helper.make_model(helper.make_graph([ensemble_node, zipmap], "conifer_view", [x_info], []))
    from conifer.converters import get_converter

    try:
        ensemble = get_converter("onnx").convert(view)
    except Exception as err:  # conifer's converter asserts and indexes; say it in one line
        raise ConfigError(f"{what}: conifer's ONNX converter could not read {name} ({type(err).__name__}: "
                          f"{tool_message(err)})") from None
    ensemble["n_classes"] = int(ensemble["n_classes"])
    ensemble["n_features"] = n_features
    ensemble["init_predict"] = [float(v) for v in ensemble["init_predict"]]
    # conifer derives max_depth from the widest tree's node count; the firmware needs the deepest leaf.
    ensemble["max_depth"] = max(tree_depth(t) for r in ensemble["trees"] for t in r)
    notes = {"read_as": f"ONNX-ML TreeEnsembleClassifier ({model.producer_name} {model.producer_version}), "
                        "converted by conifer's ONNX converter",
             "post_transform": post,
             "output": _output_note(post, n_outputs)}
    return LoadedEnsemble(ensemble, "ONNX-ML TreeEnsembleClassifier", None, notes, reference)


def _output_note(post: str, n_outputs: int) -> str:
    if post == "NONE":
        return "the margin (sum of leaf weights plus base_values), as the ONNX model outputs it"
    if n_outputs == 1:
        return (f"the margin (log-odds of class 1): the model's {post} post-transform is not in the firmware; "
                "probability = 1 / (1 + exp(-margin)) for LOGISTIC; the decision margin > 0 is the same")
    return (f"one margin per class: the model's {post} post-transform is not in the firmware; it is monotonic, so "
            "the argmax is the same")


def _onnx_n_features(value_info: Any, attrs: dict[str, Any]) -> int:
    dims = value_info.type.tensor_type.shape.dim
    used = max(int(f) for f in attrs["nodes_featureids"]) + 1
    declared = int(dims[-1].dim_value) if dims and dims[-1].dim_value > 0 else 0
    return max(declared, used)


class OnnxTreeEnsemble:
    """``TreeEnsembleClassifier`` attributes evaluated by ONNX-ML's rules, in double precision, vectorised.

    Nodes are found by (tree id, node id) and leaf weights by (tree id, node id, class id), whatever their
    order in the file; the root of a tree is the node no other node points to. Output: the margin, shape
    (n, n_outputs): one column for two classes (ONNX-ML's binary form: weights for class id 0 only), else
    one per class id.
    """

    def __init__(self, attrs: dict[str, Any], n_outputs: int, float32_input: bool, what: str) -> None:
        self.n_outputs, self.float32_input = n_outputs, float32_input
        tree_ids = np.asarray(attrs["nodes_treeids"], np.int64)
        node_ids = np.asarray(attrs["nodes_nodeids"], np.int64)
        class_ids = np.asarray(attrs["class_ids"], np.int64)
        if n_outputs == 1 and class_ids.max(initial=0) > 0:
            raise ConfigError(f"{what}: a binary classifier with leaf weights for class id {class_ids.max()}; "
                              "conifer takes ONNX-ML's binary form (weights for class id 0 only)")
        if class_ids.max(initial=0) >= n_outputs:
            raise ConfigError(f"{what}: leaf weights for class id {class_ids.max()}, but {n_outputs} classes")
        self.base = np.zeros(n_outputs)
        base = list(attrs.get("base_values") or [])
        self.base[: len(base)] = base[:n_outputs]
        self.trees = []
        for t in np.unique(tree_ids):
            rows = np.flatnonzero(tree_ids == t)
            local = {int(node_ids[r]): k for k, r in enumerate(rows)}
            modes = [bytes(attrs["nodes_modes"][r]) for r in rows]
            leaf = np.array([m == b"LEAF" for m in modes])

            def child(key: str, rows: np.ndarray = rows, local: dict[int, int] = local, leaf: np.ndarray = leaf,
                      t: int = int(t)) -> np.ndarray:
                out = np.array([local.get(int(attrs[key][r]), -1) for r in rows], np.int64)
                if np.any((out < 0) & ~leaf):
                    raise ConfigError(f"{what}: tree {t} has a branch to a node id that is not in the tree ({key})")
                return np.where(leaf, 0, out)

            true, false = child("nodes_truenodeids"), child("nodes_falsenodeids")
            pointed = set(true[~leaf].tolist()) | set(false[~leaf].tolist())
            roots = [k for k in range(len(rows)) if k not in pointed]
            if len(roots) != 1:
                raise ConfigError(f"{what}: tree {t} has {len(roots)} root nodes; expected one")
            weights = np.zeros((len(rows), n_outputs))
            for tid, nid, cid, w in zip(attrs["class_treeids"], attrs["class_nodeids"], class_ids,
                                        attrs["class_weights"], strict=True):
                if int(tid) == int(t):
                    weights[local[int(nid)], int(cid)] += float(w)
            self.trees.append({
                "feature": np.asarray(attrs["nodes_featureids"], np.int64)[rows],
                "threshold": np.asarray(attrs["nodes_values"], np.float64)[rows],
                "le": np.array([m == b"BRANCH_LEQ" for m in modes]), "leaf": leaf, "true": true, "false": false,
                "root": roots[0], "weights": weights, "depth": _local_depth(true, false, leaf, roots[0])})

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # the graph's input is float32: ONNX runtimes compare float32 inputs with float32 thresholds
        x = np.asarray(np.asarray(x, np.float32) if self.float32_input else x, np.float64)
        rows = np.arange(len(x))
        total = np.tile(self.base, (len(x), 1))
        for t in self.trees:
            node = np.full(len(x), t["root"], np.int64)
            for _ in range(t["depth"]):
                a, thr = x[rows, t["feature"][node]], t["threshold"][node]
                go_true = np.where(t["le"][node], a <= thr, a < thr)
                node = np.where(t["leaf"][node], node, np.where(go_true, t["true"][node], t["false"][node]))
            total += t["weights"][node]
        return total


def _local_depth(true: np.ndarray, false: np.ndarray, leaf: np.ndarray, root: int) -> int:
    depth, frontier = 0, [root]
    while True:
        children = [int(c) for n in frontier if not leaf[n] for c in (true[n], false[n])]
        if not children:
            return depth
        if depth > len(leaf):
            raise ConfigError("an ONNX tree has a cycle")
        frontier, depth = children, depth + 1
