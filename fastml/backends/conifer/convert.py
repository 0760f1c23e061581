"""conifer backend: a BDT becomes an HLS (``xilinxhls``), ``vhdl`` or ``cpp`` conifer project.

``convert`` chooses the fixed-point precision (``firmware.precision``; under ``auto``, the precision saved
in a loaded model file when it has one, because that is what the experiment ships, else the narrowest
within the allowed accuracy loss), writes the conifer project into ``project_dir/"firmware"``, compiles its C++
emulation (``xilinxhls``, ``cpp``: level ``csim``) and returns the NumPy fixed-point reference
(``fastml.fixed_point``) that the emulation must match exactly. The VHDL backend has no C++
emulation; its ``rtl_sim`` level runs only where conifer finds a VHDL simulator (xsim, GHDL, ModelSim),
otherwise it is recorded under ``info["not_run"]``.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..._internal.tools import conifer_env
from ...data import load_data
from ...errors import ConfigError, ToolError
from ...metrics import accuracy, roc_auc_per_class
from ...models.bdt import sklearn_ensemble, xgboost_ensemble
from ...report import Latency, Resources
from .. import FirmwareProject
from .reference import MAX_WIDTH, APFixed, FixedPointEnsemble, Precision, SumOrder, integer_bits_for

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ...models import TrainedModel
    from ...recipe import BuildConfig

#: Allowed accuracy loss (vs the float ensemble, validation split) when ``budgets.max_accuracy_drop`` is unset.
DEFAULT_ALLOWED_LOSS = 0.01
#: Fractional bits tried by the precision search (0 .. this).
MAX_SEARCH_FRAC = 24
#: Confidence (standard errors of the paired accuracy difference) the precision search keeps from the allowed loss.
SEARCH_SIGMAS = 2.0
#: VHDL simulators conifer can drive, by executable.
_VHDL_SIMULATORS = {"xsim": "xsim", "ghdl": "ghdl", "vsim": "modelsim"}


@dataclass(frozen=True)
class SearchResult:
    """Outcome of ``search_precision``: the chosen types and one row per candidate tried."""

    precision: Precision
    rows: list[dict[str, Any]]
    met: bool


def accuracy_of(scores: np.ndarray, labels: np.ndarray) -> float:

    return accuracy(scores, labels)


def search_precision(ref: FixedPointEnsemble, x: np.ndarray, y: np.ndarray, float_scores: np.ndarray,
                     allowed_loss: float, uniform: bool = False, score_range: float | None = None,
                     sigmas: float = SEARCH_SIGMAS) -> SearchResult:
    """Narrowest ``ap_fixed`` types whose accuracy loss on (x, y) vs ``float_scores`` stays within ``allowed_loss``.

    A candidate is accepted when ``loss + sigmas * sqrt(d / n) <= allowed_loss``, where ``d`` is the
    fraction of the n events whose decision differs from the float one: ``sqrt(d / n)`` bounds the
    standard error of the paired accuracy difference, so the loss also holds on other held-out events
    (the test split) with about ``sigmas`` standard deviations of confidence.

    Integer bits are fixed from the ranges (inputs: events and thresholds; scores: leaves, base score and
    ``score_range``, plus one bit of headroom), then fractional bits grow from 0: first for inputs and
    thresholds (with a wide score type), then for scores. ``uniform`` (the VHDL backend) searches one type
    for everything. The first candidate that meets the target in each stage is kept; if none does, the
    widest is kept and ``met`` is False.
    """
    x = np.asarray(x, np.float64)
    float_scores = np.asarray(float_scores, np.float64).reshape(len(y), -1)
    float_accuracy = accuracy_of(float_scores, y)
    float_decision = _decisions(float_scores)
    in_int = integer_bits_for(max(float(np.abs(x).max(initial=0.0)), ref.max_abs_threshold()))
    s_range = max(ref.max_abs_leaf(), float(np.abs(ref.init_predict).max(initial=0.0)), score_range or 0.0)
    s_int = integer_bits_for(2 * s_range)  # one bit of headroom: a wrapped score flips a confident decision
    rows: list[dict[str, Any]] = []

    def evaluate(stage: str, p: Precision, leaves: np.ndarray | None = None) -> tuple[bool, np.ndarray]:
        lv = ref.leaves(x, p.input, p.threshold) if leaves is None else leaves
        scores = ref.scores_from_leaves(lv, p.score)
        acc = accuracy_of(scores, y)
        flips = float(np.mean(_decisions(scores) != float_decision))
        margin = sigmas * float(np.sqrt(flips / len(y)))
        ok = float_accuracy - acc + margin <= allowed_loss
        rows.append({"stage": stage, **p.to_dict(), "bits": p.total_bits(), "accuracy": round(acc, 6),
                     "loss": round(float_accuracy - acc, 6), "margin": round(margin, 6),
                     "flip_fraction": round(flips, 6), "ok": bool(ok)})
        return ok, lv

    if uniform:
        i = max(in_int, s_int)
        best = None
        for f in range(0, min(MAX_SEARCH_FRAC, MAX_WIDTH - i) + 1):
            p = Precision.uniform(APFixed(i + f, i))
            ok, _ = evaluate("uniform", p)
            best = p
            if ok:
                return SearchResult(p, rows, True)
        assert best is not None
        return SearchResult(best, rows, False)

    wide_score = APFixed(min(MAX_WIDTH, s_int + MAX_SEARCH_FRAC), s_int)
    chosen_in, leaves, met_in = None, None, False
    for f in range(0, min(MAX_SEARCH_FRAC, MAX_WIDTH - in_int) + 1):
        t = APFixed(in_int + f, in_int)
        ok, leaves = evaluate("input", Precision(t, t, wide_score))
        chosen_in = t
        if ok:
            met_in = True
            break
    assert chosen_in is not None and leaves is not None
    chosen_score = wide_score
    met_score = False
    for f in range(0, wide_score.frac + 1):
        s = APFixed(s_int + f, s_int)
        ok, _ = evaluate("score", Precision(chosen_in, chosen_in, s), leaves)
        chosen_score = s
        if ok:
            met_score = True
            break
    return SearchResult(Precision(chosen_in, chosen_in, chosen_score), rows, met_in and met_score)


def _decisions(scores: np.ndarray) -> np.ndarray:
    """The decision at the working point: margin > 0 for one output, argmax otherwise."""
    return scores[:, 0] > 0 if scores.shape[1] == 1 else scores.argmax(axis=1)


def _project_name(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if ident[:1].isalpha() else f"bdt_{ident}"


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    """conifer writes helper files into the working directory: keep them inside the project."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class ExactConverter:
    """conifer's ``FixedPointConverter`` (what its VHDL model writes thresholds and reads scores with), exact in Python.

    Why: conifer compiles one C++ helper per type and loads each as a Python extension named ``fixed_point``, all
    exporting the same ``to_int``/``from_int`` symbols; in a process that already loaded one, a second type's helper
    converts with the first's type (seen here: a second VHDL build in one process wrote its thresholds at the first
    build's precision, and failed its own verification). This one has no compiled state, and no g++ run.
    """

    def __init__(self, type_string: str) -> None:
        self.type = APFixed.parse(type_string)
        self.type_string = type_string
        self.width, self.integer_bits = self.type.width, self.type.integer
        self.fractional_bits = self.type.width - self.type.integer
        self.signed = self.type.signed

    def to_int(self, x: float) -> int:
        """``(T) x`` then its bits, as ``T::V`` read as an int: the code, sign-extended for a signed type."""
        return int(self.type.to_codes(np.float64(x)))

    def to_double(self, x: float) -> float:
        return float(self.type.quantize(np.float64(x)))

    def from_int(self, x: int) -> float:
        return float(self.type.to_float(self.type.wrap(np.asarray([int(x)], np.int64)))[0])


@contextmanager
def _exact_converters() -> Iterator[None]:
    """conifer's VHDL model built with ``ExactConverter`` in place of its compiled helper (see there why)."""
    from conifer.backends.vhdl import writer

    compiled = writer.FixedPointConverter
    writer.FixedPointConverter = ExactConverter
    try:
        yield
    finally:
        writer.FixedPointConverter = compiled


def _explicit_precision(cfg: BuildConfig) -> Precision:
    try:
        t = APFixed.parse(cfg.firmware.precision)
    except ValueError as err:
        raise ConfigError(f"{cfg.source_path}: key 'firmware.precision': {err} (W <= {MAX_WIDTH}), or 'auto'") from None
    if cfg.firmware.conifer_backend == "vhdl" and not t.default_modes:
        raise ConfigError(f"{cfg.source_path}: key 'firmware.precision': conifer's VHDL backend takes a signed "
                          f"ap_fixed<W,I> with the default modes; got {t}")
    if float(t.quantize(1.0)) != 1.0:
        raise ConfigError(f"{cfg.source_path}: key 'firmware.precision': conifer casts 1.0 (split weights, norm) "
                          f"to this type, so it must hold 1.0 (ap_fixed needs at least 2 integer bits); got {t}")
    return Precision.uniform(t)


def _versus_file(precision: Precision, file_types: dict[str, str] | None) -> str:
    """How the recipe's precision relates to the model file's, for the report."""
    if not file_types:
        return ""
    try:
        same = all(APFixed.parse(file_types[k]) == getattr(precision, k)
                   for k in ("input", "threshold", "weight", "score"))
    except ValueError:
        same = False
    return ", the same as the model file's" if same else ", instead of the model file's"


def _file_precision(cfg: BuildConfig, types: dict[str, str], backend: str) -> Precision:
    """The conifer precision saved in the model file, as conifer would build it; ``ConfigError`` where it cannot."""
    where = f"{cfg.source_path}: key 'model.load'"
    try:
        parsed = {k: APFixed.parse(v) for k, v in types.items()}
    except ValueError as err:
        raise ConfigError(f"{where}: the model file's precision cannot be built bit-exactly ({err}); set "
                          "firmware.precision to an ap_fixed<W,I> type") from None
    weight = parsed["weight"] if parsed["weight"] != parsed["threshold"] else None
    p = Precision(parsed["input"], parsed["threshold"], parsed["score"], weight)
    if backend == "vhdl" and (len({p.input, p.threshold, p.score, p.weight}) > 1 or not p.input.default_modes):
        raise ConfigError(f"{where}: the model file's precision ({', '.join(f'{k} {v}' for k, v in types.items())}) "
                          "is not one signed ap_fixed<W,I>, the only form conifer's VHDL backend takes; use "
                          "conifer_backend xilinxhls, or set firmware.precision")
    if backend == "cpp" and p.input != p.threshold:
        raise ConfigError(f"{where}: the model file's input precision {p.input} differs from its threshold precision "
                          f"{p.threshold}, which conifer's cpp backend refuses; use conifer_backend xilinxhls, or set "
                          "firmware.precision")
    return p


def _conifer_config(cfg: BuildConfig, backend: str, out_dir: Path, precision: Precision) -> dict[str, Any]:
    config: dict[str, Any] = {"Backend": backend, "ProjectName": _project_name(cfg.name), "OutputDir": str(out_dir),
                              "InputPrecision": str(precision.input), "ThresholdPrecision": str(precision.threshold),
                              "WeightPrecision": str(precision.weight), "ScorePrecision": str(precision.score)}
    if backend in ("xilinxhls", "vhdl"):
        config["XilinxPart"] = cfg.firmware.part
    if backend == "xilinxhls":
        config.update(ClockPeriod=cfg.firmware.clock_period_ns, Unroll=True)
    return config


def _emulator(model: Any, n_outputs: int) -> Any:
    """Run the compiled pybind11 bridge directly (independent of the working directory)."""
    bridge = model.bridge

    def simulate(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        out = np.array([bridge.decision_function(row) for row in x], np.float64)
        return out.reshape(len(x), n_outputs)

    return simulate


def _vhdl_simulator() -> str | None:
    for exe, name in _VHDL_SIMULATORS.items():
        if shutil.which(exe):
            return name
    return None


def _estimates(model: Any, backend: str,
               cfg: BuildConfig) -> tuple[Latency | None, dict[str, Resources], dict[str, Any]]:
    if backend == "cpp":
        return None, {}, {"estimates": "not applicable: the cpp backend is a software emulation, not firmware"}
    from conifer.utils.performance import performance_estimates

    logging.getLogger("conifer.utils.performance.prediction").setLevel(logging.ERROR)
    est = performance_estimates(model, backend)
    cycles = int(est["latency"])
    latency = Latency(cycles=cycles, ns=cycles * cfg.firmware.clock_period_ns, ii=1 if backend == "vhdl" else None,
                      source="conifer_estimate")
    resources = {"conifer_estimate": Resources(lut=int(est["lut"]), ff=int(est["ff"]))}
    note = ("conifer's fitted performance model (experimental): VHDL latency = 2 + depth + ceil(log2 n_trees)"
            if backend == "vhdl" else "conifer's fitted performance model (experimental), HLS unrolled")
    return latency, resources, {"estimates": note, "estimate_raw": {k: int(v) for k, v in est.items()}}


def float_agreement(float_scores: np.ndarray, fw_scores: np.ndarray, labels: np.ndarray,
                    class_names: tuple[str, ...]) -> dict[str, Any]:
    """How the firmware scores compare with the float ensemble's on the same events."""

    f = np.asarray(float_scores, np.float64).reshape(len(labels), -1)
    q = np.asarray(fw_scores, np.float64).reshape(len(labels), -1)
    diff = np.abs(f - q)
    if f.shape[1] == 1:
        flips, point = (f[:, 0] > 0) != (q[:, 0] > 0), "margin > 0 (probability 0.5)"
    else:
        flips, point = f.argmax(axis=1) != q.argmax(axis=1), "argmax over classes"
    return {
        "events": len(labels), "max_abs_score_diff": float(diff.max()), "mean_abs_score_diff": float(diff.mean()),
        "decision_flip_fraction": float(flips.mean()), "decision_flips": int(flips.sum()), "working_point": point,
        "accuracy": {"float": accuracy_of(f, labels), "firmware": accuracy_of(q, labels)},
        "auc": {"float": roc_auc_per_class(f, labels, class_names),
                "firmware": roc_auc_per_class(q, labels, class_names)},
    }


def _validation(trained: TrainedModel, cfg: BuildConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    val = getattr(trained, "validation", None)
    names = getattr(trained, "class_names", None)
    if val is not None and names:
        return val[0], val[1], tuple(names)

    data = load_data(cfg.data, cfg.config_dir)
    return data.x_val, data.y_val, data.class_names


def convert(trained: TrainedModel, cfg: BuildConfig, project_dir: Path) -> FirmwareProject:
    """Write and compile the conifer project for ``trained`` (kind "bdt") under ``project_dir/"firmware"``.

    Guarantees: ``reference`` is the fixed-point model at the chosen precision; every simulator returned
    ran its compile step successfully; ``info`` is JSON-serialisable and holds ``precision``,
    ``precision_search`` (when "auto"), ``float_agreement`` and ``not_run`` (levels that could not run, and why).
    Raises ``ToolError`` if the emulation does not compile, ``ConfigError`` for a bad ``firmware.precision``.
    """
    import conifer


    backend = cfg.firmware.conifer_backend
    timings: dict[str, float] = {}
    ensemble = getattr(trained, "ensemble", None) or (
        xgboost_ensemble(trained.model) if type(trained.model).__module__.startswith("xgboost")
        else sklearn_ensemble(trained.model))
    ref = FixedPointEnsemble(ensemble)
    x_val, y_val, class_names = _validation(trained, cfg)
    assert trained.predict_float is not None
    float_val = trained.predict_float(x_val)
    float_acc = accuracy_of(float_val, y_val)
    info: dict[str, Any] = {"conifer_backend": backend, "conifer_version": str(conifer.__version__),
                            "library": ensemble["library"], "splitting_convention": ensemble["splitting_convention"],
                            "n_rounds": int(ensemble["n_trees"]), "n_trees": ref.n_trees, "n_outputs": ref.n_outputs,
                            "max_depth": ref.depth,
                            "quantisation": "ap_fixed AP_TRN (floor) / AP_WRAP on inputs, thresholds, leaves, sums",
                            "not_run": {}}

    t0 = time.perf_counter()
    file_types: dict[str, str] | None = getattr(trained, "file_precision", None)
    if file_types:
        info["file_precision"] = file_types
    if cfg.firmware.precision.strip().lower() == "auto" and file_types:
        # what the experiment ships: the types saved with the model are the firmware, not a starting point
        precision = _file_precision(cfg, file_types, backend)
        info["precision_source"] = "the model file's conifer config (firmware.precision: auto keeps a file's precision)"
    elif cfg.firmware.precision.strip().lower() == "auto":
        info["precision_source"] = "search (firmware.precision: auto, and the model file carries no precision)"
        allowed = cfg.budgets.max_accuracy_drop if cfg.budgets.max_accuracy_drop is not None else DEFAULT_ALLOWED_LOSS
        result = search_precision(ref, x_val, y_val, float_val, allowed, uniform=backend == "vhdl",
                                  score_range=float(np.abs(float_val).max(initial=0.0)))
        precision = result.precision
        info["precision_search"] = {"allowed_loss": allowed, "float_accuracy": float_acc,
                                    "events": "validation split", "n_events": len(y_val),
                                    "acceptance": f"loss + {SEARCH_SIGMAS:g} * sqrt(flip_fraction / n_events) "
                                                  "<= allowed_loss",
                                    "target_met": result.met, "chosen": precision.to_dict(), "rows": result.rows}
    else:
        precision = _explicit_precision(cfg)
        info["precision_source"] = "the recipe (firmware.precision)" + _versus_file(precision, file_types)
    timings["precision_search"] = round(time.perf_counter() - t0, 3)
    info["precision"] = precision.to_dict()
    if not all(t.default_modes for t in (precision.input, precision.threshold, precision.weight, precision.score)):
        info["quantisation"] = "each type's own quantisation and overflow modes (see precision), as in ap_types"

    # conifer's HLS reduces the trees' scores pairwise, its cpp backend with std::accumulate: with a
    # saturating score type the order changes the bits
    order: SumOrder = "sequential" if backend == "cpp" else "balanced"

    def reference(x: np.ndarray) -> np.ndarray:
        return ref.decision_function(x, precision, order)

    reference_name = "fixed-point reference"
    output_note = getattr(trained, "output_note", "")
    if output_note:
        info["output"] = output_note
        post = trained.selection.get("post_transform")
        if post and post != "NONE":
            reference_name = (f"fixed-point reference of the margin (the model's {post} post-transform is not in "
                              "the firmware)")

    out_dir = Path(project_dir).resolve() / "firmware"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(conifer_env())
    config = _conifer_config(cfg, backend, out_dir, precision)
    simulators: dict[str, Any] = {}
    t0 = time.perf_counter()
    with _cwd(out_dir), _exact_converters():  # conifer writes helper files into the working directory
        model = conifer.model.make_model(copy.deepcopy(ensemble), config)
        if backend == "vhdl":
            model.write()
    timings["write"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    if backend in ("xilinxhls", "cpp"):
        try:
            with _cwd(out_dir):
                model.compile()
        except Exception as err:  # conifer raises bare Exception with the g++ failure
            raise ToolError(f"conifer {backend} emulation did not compile in {out_dir}: {err}") from None
        simulators["csim"] = _emulator(model, ref.n_outputs)
    else:
        sim = _vhdl_simulator()
        if sim is None:
            info["not_run"]["rtl_sim"] = "no VHDL simulator (xsim, ghdl or vsim) on PATH"
        else:
            from conifer.backends.vhdl import set_simulator

            set_simulator(sim)
            if not model.compile():
                raise ToolError(f"conifer VHDL simulation ({sim}) did not compile in {out_dir}; see its log there")

            def rtl_sim(x: np.ndarray) -> np.ndarray:
                y = model.decision_function(np.asarray(x, np.float64))
                if y is None:
                    raise ToolError(f"conifer VHDL simulation ({sim}) failed in {out_dir}; see its log there")
                return np.asarray(y, np.float64).reshape(len(x), ref.n_outputs)

            simulators["rtl_sim"] = rtl_sim
    timings["compile"] = round(time.perf_counter() - t0, 3)

    latency, resources, est_info = _estimates(model, backend, cfg)
    info.update(est_info)

    t0 = time.perf_counter()
    n_agree = min(len(x_val), cfg.verify.samples)
    level = "csim" if "csim" in simulators else None
    fw_val = simulators[level](x_val[:n_agree]) if level else reference(x_val[:n_agree])
    info["float_agreement"] = {"scores_from": level or "fixed-point reference", "events_from": "validation split",
                               **float_agreement(float_val[:n_agree], fw_val, y_val[:n_agree], class_names)}
    timings["float_agreement"] = round(time.perf_counter() - t0, 3)
    return FirmwareProject(backend="conifer", path=out_dir, simulators=simulators, reference=reference,
                           reference_name=reference_name, latency=latency, resources=resources, info=info,
                           timings_s=timings, not_run=info["not_run"], handle=model)
