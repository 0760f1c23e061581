"""Training quality on the shipped jet sample: the default recipe vs the two it replaced vs HGQ2's own example.

Four quantisation-aware trainings of the 5-class jet tagger on the *same* events and the *same*
train/validation/test split (``configs/jet_tagger.yaml``'s ``data`` section), one after the other in
this process, so their times are comparable within the run:

- ``new``: ``configs/jet_tagger.yaml`` as shipped (``fastml.models.kind_of(cfg).train``, exactly what
  ``fastml build`` runs), float twin included.
- ``old``: the same file with the model and training sections it had before issue 14 (``OLD_MODEL``,
  ``OLD_TRAIN``).
- ``previous``: the first issue-14 recipe (``PREVIOUS_MODEL``, ``PREVIOUS_TRAIN``).
- ``hgq2 example``: the HGQ2 project's example jet tagger (``example/small_jet_tagger.ipynb`` of
  github.com/calad0i/HGQ2): its model (QDense 64-32-32-5 without batch norm, its quantiser scopes and
  output-quantiser regulariser), optimiser (Adam 5e-3) and constant ``beta0 = 0.5e-5``, scaled to our
  sample (``HGQ2_EXAMPLE``): the notebook's 20 steps per epoch, and the ``new`` recipe's epochs (the same
  training budget; the notebook's 3000 epochs are over a 22x larger training set). Its Pareto front is
  kept the way fastml keeps one.

For ``old``, ``previous`` and ``new`` the checkpoint each recipe's rule keeps is built as da4ml RTL
(``fastml.backends.rtl.convert``): ``lut_da4ml`` is da4ml's cost model, ``firmware_acc`` the test
accuracy of da4ml's bit-exact emulator (``mismatches`` against the quantised model must be 0). The
``new / old`` and ``new / previous`` rows divide two of them, measured in the same run.

The front rows compare accuracy at matched EBOPs: for each EBOPs level, each run's Pareto checkpoint
with the best *validation* accuracy among those at or under the level (chosen without looking at the
test split), calibrated on the training set (``trace_minmax``), its test accuracy measured.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .core import REPO_ROOT, Context, Row, not_run

JET_CONFIG = REPO_ROOT / "configs" / "jet_tagger.yaml"

#: The model keys configs/jet_tagger.yaml had before the narrow-start recipe (commit 53381c5 and earlier).
_BN_DEFAULT_STARTS: dict[str, Any] = {"batchnorm": True, "weight_bits0": None, "weight_int_bits0": None,
                                      "data_int_bits0": None, "data_frac_bits0": None}
#: configs/jet_tagger.yaml's model and train sections before issue 14 (commit 25b0be5 and earlier).
OLD_MODEL: dict[str, Any] = _BN_DEFAULT_STARTS
OLD_TRAIN: dict[str, Any] = {"epochs": 60, "batch_size": 512, "learning_rate": 3e-3,
                             "beta": {"start": 1e-6, "end": 3e-5}, "select": "smallest_within",
                             "max_accuracy_drop": 0.005, "float_epochs": None}
#: The recipe of the first issue-14 change (commits b1e7ed7..53381c5: 600 epochs, beta ramped to 1e-4, kept
#: within 0.5 points of the float twin; batch norm and HGQ2's default starting widths): 5 104 EBOPs.
PREVIOUS_MODEL: dict[str, Any] = _BN_DEFAULT_STARTS
PREVIOUS_TRAIN: dict[str, Any] = {"epochs": 600, "batch_size": 512, "learning_rate": 3e-3,
                                  "beta": {"start": 1e-6, "end": 1e-4}, "select": "smallest_within_float",
                                  "max_accuracy_drop": 0.005, "float_epochs": 100}

#: HGQ2 example/small_jet_tagger.ipynb: 3000 epochs, batch 33 200 of 664 000 training jets (OpenML 42468,
#: 80 %: 20 steps per epoch), Adam 5e-3, beta0 0.5e-5 throughout (no schedule). Scaled to our sample:
#: the same 20 steps per epoch (batch = training events / 20); epochs: the new recipe's (same budget).
HGQ2_EXAMPLE: dict[str, Any] = {"steps_per_epoch": 20, "learning_rate": 5e-3, "beta0": 0.5e-5,
                                "hidden": [64, 32, 32]}

#: --quick: small widths and few epochs, only to prove the machinery end to end.
QUICK: dict[str, Any] = {"max_samples": 15_000, "hidden": [16], "new_epochs": 40, "old_epochs": 6,
                         "previous_epochs": 20, "example_epochs": 40}

#: EBOPs levels of the front comparison (those inside the new recipe's front are reported).
LEVELS = (500, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 20_000, 50_000, 100_000)


def build_hgq2_example(hidden: list[int], n_outputs: int, beta0: float) -> Any:
    """The HGQ2 example notebook's ``build_model(use_softmax=False, beta0)``, widths ``hidden``."""
    import keras
    from hgq.config import QuantizerConfig, QuantizerConfigScope
    from hgq.layers import QDense
    from hgq.regularizers import MonoL1

    scope0 = QuantizerConfigScope(place="all", k0=1, b0=3, i0=0, default_q_type="kbi", overflow_mode="sat_sym")
    scope1 = QuantizerConfigScope(place="datalane", k0=0, default_q_type="kif", overflow_mode="wrap", f0=3, i0=3)
    with scope0, scope1:
        iq_conf = QuantizerConfig(place="datalane", k0=1)
        oq_conf = QuantizerConfig(place="datalane", k0=1, fr=MonoL1(1e-3))
        first = {"iq_conf": iq_conf}  # signed input quantiser on the first layer only, as in the notebook
        layers = [QDense(w, beta0=beta0, activation="relu", name=f"dense_{i}", **(first if i == 0 else {}))
                  for i, w in enumerate(hidden)]
        layers.append(QDense(n_outputs, beta0=beta0, enable_oq=True, name=f"dense_{len(hidden)}", oq_conf=oq_conf))
    return keras.models.Sequential(layers)


def train_hgq2_example(data: Any, front_dir: Path, epochs: int, hidden: list[int], seed: int) -> dict[str, Any]:
    """Train the example recipe on ``data``; returns its front records (as fastml's) and timings."""
    import keras
    from hgq.utils.sugar import FreeEBOPs, ParetoFront

    cfg = HGQ2_EXAMPLE
    keras.utils.set_random_seed(seed)
    batch = int(np.ceil(len(data.y_train) / cfg["steps_per_epoch"]))
    model = build_hgq2_example(hidden, data.n_classes, cfg["beta0"])
    # the notebook's CategoricalCrossentropy on one-hot labels; the sparse form is the same loss
    model.compile(keras.optimizers.Adam(cfg["learning_rate"]),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pareto = ParetoFront(front_dir, ["val_accuracy", "ebops"], [1, -1], fname_format="epoch={epoch}.keras")
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(data.x_train, data.y_train, validation_data=(data.x_val, data.y_val), epochs=epochs, batch_size=batch,
              verbose=0, callbacks=[FreeEBOPs(), pareto, keras.callbacks.TerminateOnNaN()])
    records = [{"val_accuracy": float(r[0]), "ebops": float(r[1]), "epoch": int(p.stem.split("=", 1)[1]),
                "file": p.name} for r, p in zip(pareto.record, pareto.paths, strict=True)]
    return {"pareto": records, "train_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - c0,
            "batch_size": batch, "epochs": epochs}


def at_level(records: list[dict[str, Any]], level: float) -> dict[str, Any] | None:
    """The record with the best validation accuracy among those with at most ``level`` EBOPs (fewer EBOPs on ties)."""
    under = [r for r in records if r["ebops"] <= level]
    return max(under, key=lambda r: (r["val_accuracy"], -r["ebops"])) if under else None


def evaluate_checkpoint(path: Path, data: Any) -> tuple[Any, float, np.ndarray]:
    """Load a Pareto checkpoint, calibrate it on the training set; (model, EBOPs, per-event correctness on the
    test split: its mean is the test accuracy)."""
    import keras
    from hgq.utils import trace_minmax

    from fastml.verification import correct_predictions

    model = keras.models.load_model(path, compile=False)
    ebops = float(trace_minmax(model, data.x_train, batch_size=8192))
    scores = np.asarray(model.predict(data.x_test, batch_size=8192, verbose=0))
    return model, ebops, correct_predictions(scores, data.y_test)


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[float, float]:
    """(accuracy of a minus b, its standard error), both in points, for two classifiers on the *same* events.

    Paired: the events both get right or both get wrong carry no difference, so the error is that of the
    per-event difference (often well under the 0.47 points each accuracy carries alone on 10 000 events).
    """
    d = np.asarray(correct_a, np.float64) - np.asarray(correct_b, np.float64)
    return 100 * float(d.mean()), 100 * float(d.std(ddof=1) / np.sqrt(len(d)))


def _firmware(ctx: Context, cfg: Any, trained: Any, data: Any, tag: str) -> dict[str, Any]:
    """da4ml RTL of the kept checkpoint: LUT/latency from da4ml's cost model, emulator accuracy on the test split."""
    from fastml.backends import rtl_backend
    from fastml.verification import accuracy, verify_project

    rtl_cfg = cfg.model_copy(update={
        "firmware": cfg.firmware.model_copy(update={"backend": "rtl", "output_dir": str(ctx.workdir)}),
        "verify": cfg.verify.model_copy(update={"rtl_sim": False})})
    proj = rtl_backend.convert(trained, rtl_cfg, ctx.workdir / f"training_{tag}")
    outputs: dict[str, np.ndarray] = {}
    levels, _ = verify_project(proj, data.x_test, outputs)
    da4ml = proj.resources["da4ml_estimate"]
    return {"lut_da4ml": da4ml.lut, "ff_da4ml": da4ml.ff,
            "cycles@200MHz": proj.latency.cycles if proj.latency else None,
            "firmware_acc": round(accuracy(outputs["emulator"], data.y_test), 4),
            "mismatches": levels["emulator"].mismatches}


def _recipe_row(ctx: Context, cfg: Any, data: Any, tag: str, front_dir: Path) -> tuple[Row, dict[str, Any]]:
    from fastml.models import kind_of
    from fastml.verification import accuracy

    t0, c0 = time.perf_counter(), time.process_time()
    trained = kind_of(cfg).train(cfg, data, progress=False, keep_front=front_dir)
    train_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    sel = trained.selection
    float_acc = accuracy(trained.predict_float(data.x_test), data.y_test) if trained.predict_float else None
    values: dict[str, Any] = {
        "epochs": sel["epochs"], "float_epochs": sel.get("float_epochs"), "train_s": round(train_s, 1),
        "train_cpu_s": round(cpu_s, 1), "front_points": len(sel["pareto"]),
        "kept_epoch": sel["pareto"][sel["chosen"]]["epoch"], "ebops": round(trained.ebops or 0),
        "front_min_ebops": round(min(r["ebops"] for r in sel["pareto"])),
        "float_acc": round(float_acc, 4) if float_acc is not None else None,
        "quantized_acc": round(accuracy(trained.predict_quantized(data.x_test), data.y_test), 4),
    }
    values.update(_firmware(ctx, cfg, trained, data, tag))
    if values["float_acc"] is not None:
        values["drop_points"] = round(100 * (values["float_acc"] - values["firmware_acc"]), 2)
    tc = cfg.train
    m = cfg.model
    starts = (f"starts {m.weight_bits0}/{m.weight_int_bits0} {m.data_int_bits0}/{m.data_frac_bits0}"
              if m.weight_bits0 is not None else "HGQ2's default starts")
    note = (f"{'-'.join(map(str, m.hidden))} MLP{' + batch norm' if m.batchnorm else ''}, {starts}, beta "
            f"{tc.beta.start:g}->{tc.beta.end:g} over {tc.epochs} epochs, batch {tc.batch_size}, Adam "
            f"{tc.learning_rate:g}, select {tc.select} {tc.max_accuracy_drop:g}; {len(data.y_test)} test events")
    return Row("training", tag, values, note=note), {"pareto": sel["pareto"], "front_dir": front_dir}


def _ratio_row(new: Row, old: Row) -> Row:
    n, o = new.values, old.values
    label = f"{new.item} / {old.item}"

    def ratio(key: str) -> float | None:
        return round(n[key] / o[key], 3) if n.get(key) and o.get(key) else None

    return Row("training", label, {
        "train_s": ratio("train_s"), "train_cpu_s": ratio("train_cpu_s"), "ebops": ratio("ebops"),
        "lut_da4ml": ratio("lut_da4ml"), "firmware_acc": ratio("firmware_acc"),
        "drop_points": round(n["drop_points"] - o["drop_points"], 2)
        if n.get("drop_points") is not None and o.get("drop_points") is not None else None,
    }, note=f"ratios {label} of the rows above (same run); drop_points: {new.item} minus {old.item}, in accuracy "
            "points")


def front_rows(fronts: dict[str, dict[str, Any]], data: Any, log: Any) -> list[Row]:
    """Accuracy at matched EBOPs levels for each run's front: the ``LEVELS`` inside the ``new`` front's
    range, and its smallest point's EBOPs (so every point of the range fastml covers is compared)."""
    lo = min(r["ebops"] for r in fronts["new"]["pareto"])
    hi = max(r["ebops"] for r in fronts["new"]["pareto"])
    levels = sorted({int(np.ceil(lo)), *(lv for lv in LEVELS if lo <= lv <= hi)})
    cache: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
    rows: list[Row] = []
    for level in levels:
        values: dict[str, Any] = {"ebops_level": level}
        new_correct: np.ndarray | None = None
        for name, front in fronts.items():
            rec = at_level(front["pareto"], level)
            key = name.replace(" ", "_")
            if rec is None:
                values.update({f"{key}_ebops": None, f"{key}_val": None, f"{key}_test": None})
                continue
            if (name, rec["file"]) not in cache:
                log(f"   {name}: front point epoch {rec['epoch']} for {level} EBOPs")
                _, ebops, correct = evaluate_checkpoint(front["front_dir"] / rec["file"], data)
                cache[(name, rec["file"])] = (ebops, correct)
            ebops, correct = cache[(name, rec["file"])]
            values.update({f"{key}_ebops": round(ebops), f"{key}_val": round(rec["val_accuracy"], 4),
                           f"{key}_test": round(float(correct.mean()), 4)})
            if name == "new":
                new_correct = correct
            elif name == "hgq2 example" and new_correct is not None:
                diff, se = paired_difference(new_correct, correct)
                values.update({"new_minus_example_points": round(diff, 2), "paired_se_points": round(se, 2)})
        rows.append(Row("training_front", f"<= {level:,} EBOPs", values))
    if rows:
        rows[-1].note = ("per level and run: the front checkpoint with the best validation accuracy at or under the "
                         "level; _ebops after calibration on the training set, _val validation and _test test "
                         "accuracy; new_minus_example_points: test accuracy difference on the same events, "
                         "paired_se_points its standard error (a difference within ~2 of these is noise); "
                         "'-': that run's front does not reach down to the level")
    return rows


def training_group(ctx: Context) -> list[Row]:
    """Rows of the ``training`` group: old and new recipe, their ratios, the HGQ2 example, the matched fronts."""
    from fastml._internal.keras_backend import ensure_backend
    from fastml.data import load_data
    from fastml.recipe import load_config

    ensure_backend()
    base = load_config(JET_CONFIG)
    quick_model = {"hidden": QUICK["hidden"]} if ctx.quick else {}

    def recipe(tag: str, model: dict[str, Any], train: dict[str, Any]) -> Any:
        quick_train = {"epochs": QUICK[f"{tag}_epochs"]} if ctx.quick else {}
        return load_config(JET_CONFIG, {"name": f"training_{tag}", "model": {**model, **quick_model},
                                        "train": {**train, **quick_train}})

    recipes = {"old": recipe("old", OLD_MODEL, OLD_TRAIN), "new": recipe("new", {}, {}),
               "previous": recipe("previous", PREVIOUS_MODEL, PREVIOUS_TRAIN)}
    new_cfg = recipes["new"]
    data = load_data(base.data, base.config_dir, max_samples=QUICK["max_samples"] if ctx.quick else None)

    rows: list[Row] = []
    fronts: dict[str, dict[str, Any]] = {}
    for tag, cfg in recipes.items():
        ctx.log(f"   training the {tag} recipe ({cfg.train.epochs} epochs)")
        row, fronts[tag] = _recipe_row(ctx, cfg, data, tag, ctx.workdir / f"front_{tag}")
        rows.append(row)
    rows.append(_ratio_row(rows[1], rows[0]))
    rows.append(_ratio_row(rows[1], rows[2]))

    epochs = QUICK["example_epochs"] if ctx.quick else new_cfg.train.epochs
    hidden = QUICK["hidden"] if ctx.quick else HGQ2_EXAMPLE["hidden"]
    ctx.log(f"   training the HGQ2 example recipe ({epochs} epochs)")
    try:
        ex = train_hgq2_example(data, ctx.workdir / "front_example", epochs, hidden, seed=base.train.seed)
        fronts["hgq2 example"] = {"pareto": ex["pareto"], "front_dir": ctx.workdir / "front_example"}
        rows.append(Row("training", "hgq2 example", {
            "epochs": epochs, "train_s": round(ex["train_s"], 1), "train_cpu_s": round(ex["train_cpu_s"], 1),
            "front_points": len(ex["pareto"]),
            "front_min_ebops": round(min(r["ebops"] for r in ex["pareto"])) if ex["pareto"] else None,
        }, note=f"HGQ2 example/small_jet_tagger.ipynb recipe: QDense {'-'.join(map(str, hidden))}, Adam "
                f"{HGQ2_EXAMPLE['learning_rate']:g}, beta0 {HGQ2_EXAMPLE['beta0']:g} constant, "
                f"batch {ex['batch_size']} ({HGQ2_EXAMPLE['steps_per_epoch']} steps/epoch as in the notebook); "
                "no float twin, no checkpoint rule"))
    except Exception as err:  # the baseline failing must not hide fastml's own rows
        rows.append(not_run("training", "hgq2 example", f"{type(err).__name__}: {err}"))
    rows.extend(front_rows(fronts, data, ctx.log))
    return rows
