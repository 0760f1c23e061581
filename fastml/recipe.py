"""Build recipes: YAML parsed once into typed, validated objects.

Every other stage takes these objects, never raw dicts. ``load_config`` guarantees that a returned
``BuildConfig`` has only known keys, values of the right type and range, existing data files, and a
``name`` that is safe to use as a single folder name.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import yaml
from pydantic import (
    Field,
    SerializeAsAny,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from . import data
from ._internal import plugins
from ._internal.fixed_point import APFixed
from ._internal.schema import deep_merge, one_line, pydantic_error_line, short_repr
from .data.constituents import PARTICLE_FEATURES
from .errors import ConfigError
from .types import StrictModel

#: Name of a build: becomes ``<output_dir>/<name>/``, so it may not contain separators or start with a dot.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: A resource budget: an absolute count (``5000``) or a share of the chosen part (``"12.5%"``).
_PERCENT = re.compile(r"^\s*\d+(\.\d+)?\s*%\s*$")



class ModelSection(StrictModel):
    """Base of a model kind's recipe section (``model:``): the kind's class sets ``kind: Literal["<name>"]``."""

    kind: str


class ModelKindSpec(Protocol):
    """What the recipe needs of a model kind (``fastml.models.base.ModelKind`` is one): its section, the
    backends that build it, and checks that need the whole recipe or the data's shape."""

    name: ClassVar[str]
    Section: ClassVar[type[ModelSection]]
    backends: ClassVar[tuple[str, ...]]
    backend_notes: ClassVar[dict[str, str]]

    def __init__(self, section: ModelSection) -> None: ...
    def check_section(self, cfg: BuildConfig) -> str | None: ...
    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None: ...


#: Every loaded model kind by name; ``fastml.models.base.ModelKind`` registers each kind it defines here.
_KINDS: dict[str, type[ModelKindSpec]] = {}


def register_model_kind(kind: type[ModelKindSpec]) -> None:
    """Called once per kind class (by ``ModelKind``'s metaclass); a second class of the same name is an error."""
    known = _KINDS.get(kind.name)
    if known is not None and known.__qualname__ != kind.__qualname__:
        raise TypeError(f"model kind {kind.name!r} is defined twice ({known.__qualname__}, {kind.__qualname__})")
    _KINDS[kind.name] = kind


def model_kind_names() -> list[str]:
    """Every ``model.kind`` a recipe may name (built-in and registered by other packages), without loading any."""
    return list(dict.fromkeys([*plugins.names(plugins.MODEL_KINDS), *_KINDS]))


def model_kind(name: str) -> type[ModelKindSpec] | None:
    """The kind class of ``name``, its module loaded on first use (so a recipe loads only the kind it names)."""
    if name not in _KINDS and name in plugins.names(plugins.MODEL_KINDS):
        plugins.load(plugins.MODEL_KINDS, name)  # defining the class registers it
    return _KINDS.get(name)


class SplitConfig(StrictModel):
    """Train/validation/test fractions; the split is reproducible through ``seed``."""

    train: float = Field(0.6, gt=0, lt=1)
    val: float = Field(0.2, gt=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {self.train + self.val + self.test:g}")
        return self


class DataConfig(StrictModel):
    """Where the events come from and how they are prepared.

    ``source`` is ``builtin:jets_hlf`` (the Pythia 8 jet sample shipped with fastml),
    ``openml:42468`` (the published benchmark, read from a local cache), or a path (relative to the
    YAML file) to a ``.npz`` / ``.h5`` / ``.hdf5`` file with arrays ``x_key`` and ``y_key``, or to a
    ``.csv`` / ``.parquet`` / ``.arff`` file with the benchmark's columns.

    Particle data: ``builtin:jets_constituents`` (each jet's leading 32 constituents) gives x of shape
    (events, n_particles, features). ``n_particles`` keeps the leading N (default: all the data has);
    ``particle_features`` names the per-particle features (``fastml.data.constituents.PARTICLE_FEATURES``;
    default ``DEFAULT_PARTICLE_FEATURES``). Either one on an ``.h5`` file (or a folder of them) reads the
    published hls4ml particle layout (``jetConstituentList``) or a 3-D ``x_key``. Neither applies to
    per-jet features (``builtin:jets_hlf``, ``openml:42468``).
    """

    source: str = "builtin:jets_hlf"
    x_key: str = "x"
    y_key: str = "y"
    max_samples: int | None = Field(None, gt=0)
    split: SplitConfig = SplitConfig()
    scaling: Literal["standard", "none"] = "standard"
    n_particles: int | None = Field(None, gt=0)
    particle_features: list[str] | None = None

    @field_validator("n_particles")
    @classmethod
    def _n_particles_fit_source(cls, v: int | None, info: ValidationInfo) -> int | None:
        # input_layout opens no file: builtin and OpenML sources are checked here, user files when read
        source = info.data.get("source", "")
        if v is not None:
            _require_particle_source(source)
            most = data.BUILTIN_MAX_PARTICLES.get(source.removeprefix("builtin:"))
            if most is not None and v > most:
                raise ValueError(f"{source} stores {most} constituents per jet, expected 1..{most}; got {v}")
        return v

    @field_validator("particle_features")
    @classmethod
    def _known_particle_features(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is not None:
            _require_particle_source(info.data.get("source", ""))
            unknown = [name for name in v if name not in PARTICLE_FEATURES]
            if unknown or not v:
                raise ValueError(f"expected a non-empty list of {', '.join(PARTICLE_FEATURES)}; got {unknown or v}")
        return v


def _require_particle_source(source: str) -> None:
    if data.input_layout(source) == "features":
        raise ValueError(f"applies only to particle data (e.g. builtin:jets_constituents), got data.source "
                         f"{source!r} (per-jet features)")


def __getattr__(name: str) -> Any:
    """``MLPConfig`` / ``BDTConfig``: the built-in kinds' sections under the names fastml 0.1 exported (one
    release); loading them here keeps the recipe from importing the model kinds."""
    kind = {"MLPConfig": "mlp", "BDTConfig": "bdt"}.get(name)
    spec = model_kind(kind) if kind else None
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return spec.Section


class BetaSchedule(StrictModel):
    """EBOPs regulariser strength: log-interpolated from ``start`` to ``end`` over training."""

    start: float = Field(1e-6, ge=0)
    end: float = Field(1e-4, ge=0)


class TrainConfig(StrictModel):
    """Quantisation-aware training and checkpoint choice on the accuracy-vs-EBOPs front.

    ``select: smallest_within`` keeps the Pareto checkpoint with the fewest EBOPs whose validation
    accuracy is within ``max_accuracy_drop`` of the best one; ``smallest_within_float``: within
    ``max_accuracy_drop`` of the float twin's validation accuracy; ``best_accuracy`` keeps the most accurate.

    The float twin trains with early stopping (patience 10) for at most ``float_epochs`` epochs
    (``None``: ``epochs``), so a long quantisation-aware run does not also mean a long float run; an
    ``epochs`` override (``--quick``) caps both.
    """

    epochs: int = Field(60, gt=0, le=100_000)
    batch_size: int = Field(512, gt=0)
    learning_rate: float = Field(3e-3, gt=0)
    beta: BetaSchedule = BetaSchedule()
    select: Literal["smallest_within", "smallest_within_float", "best_accuracy"] = "smallest_within"
    max_accuracy_drop: float = Field(0.005, ge=0, le=1)
    float_baseline: bool = True  # also train an unquantised twin for the float accuracy
    float_epochs: int | None = Field(None, gt=0, le=100_000)  # the float twin's epoch cap; None: epochs
    seed: int = 0


class FirmwareConfig(StrictModel):
    """Firmware target. ``output_dir`` is relative to the working directory."""

    backend: str = "hls4ml"  # built in, or registered by another package (entry points ``fastml.backends``)
    part: str = "xcvu13p-flga2577-2-e"
    clock_period_ns: float = Field(5.0, gt=0)
    io_type: Literal["io_parallel"] = "io_parallel"
    strategy: Literal["distributed_arithmetic", "latency"] = "distributed_arithmetic"
    reuse_factor: int = Field(1, ge=1)
    output_dir: str = "hls_projects"
    # resource limits: a larger model needs --force; a tool (g++, verilator, yosys) running longer is killed
    max_weights: int = Field(200_000, gt=0)
    tool_timeout_s: float = Field(3600, gt=0)
    # rtl backend
    flavor: Literal["verilog", "vhdl"] = "verilog"
    # the rtl backend's compiler: da4ml 0.5 (default until alkaid is measured no worse on LUT: benchmarks/README.md) or
    # alkaid (da4ml's successor: half-to-even rounding, saturation; QKeras models); other backends ignore it
    compiler: Literal["da4ml", "alkaid"] = "da4ml"
    latency_cutoff: float | None = Field(None, gt=0)  # delay units per stage (da4ml: adders; alkaid: ns); None: derived
    yosys: bool = True  # open-source synthesis estimate of the RTL (minutes for a design of 50k+ LUT)
    # conifer backend
    conifer_backend: Literal["xilinxhls", "vhdl", "cpp"] = "xilinxhls"
    # ap_[u]fixed<W,I[,Q,O]> for inputs/thresholds/scores, or "auto": the precision saved in a loaded model file
    # (conifer JSON: what the experiment ships), else the narrowest within the allowed accuracy loss (search)
    precision: str = "auto"

    @field_validator("backend", mode="before")
    @classmethod
    def _registered_backend(cls, v: Any) -> Any:
        names = plugins.names(plugins.BACKENDS)
        if v not in names:
            quoted = [repr(n) for n in names]
            raise ValueError(f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")
        return v

    @field_validator("precision")
    @classmethod
    def _ap_fixed_or_auto(cls, v: str) -> str:
        if v != "auto":
            APFixed.parse(v)  # ValueError names the expected form
        return v


class VerifyConfig(StrictModel):
    """Bit-exactness checks: how many held-out events, and which simulation levels to run."""

    samples: int = Field(10_000, gt=0)
    rtl_sim: bool = True  # verilator simulation of RTL (rtl backend)
    # da4ml's logic compiled to vectorised C++ (rtl backend): fast for millions of events, but g++ takes from
    # seconds to tens of minutes on large logic, so it is asked for, not default (fastml.compiled_emulator)
    compiled_emulator: bool = False


ResourceBudget = int | str
ResourceSource = Literal["first_available", "vivado", "vitis_hls", "yosys", "da4ml_estimate", "conifer_estimate"]


class BudgetsConfig(StrictModel):
    """Limits a build must meet (checked by ``fastml check``). Unset budgets are not checked."""

    latency_cycles: int | None = Field(None, ge=0)
    latency_ns: float | None = Field(None, ge=0)
    ii: int | None = Field(None, ge=1)
    lut: ResourceBudget | None = None
    ff: ResourceBudget | None = None
    dsp: ResourceBudget | None = None
    bram: ResourceBudget | None = None
    min_accuracy: float | None = Field(None, ge=0, le=1)
    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    max_mismatches: int = Field(0, ge=0)
    # anomaly-detection triggers: {"1kHz" | "10kHz": least efficiency of every signal at that trigger rate}
    min_signal_efficiency_at_rate: dict[Annotated[str, StringConstraints(pattern=r"^[0-9.]+k?Hz$")],
                                        Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    resource_source: ResourceSource = "first_available"
    max_regression: dict[str, str] = Field(default_factory=dict)

    @field_validator("lut", "ff", "dsp", "bram")
    @classmethod
    def _count_or_percent(cls, v: ResourceBudget | None) -> ResourceBudget | None:
        if isinstance(v, str) and not _PERCENT.match(v):
            raise ValueError(f"expected a count (e.g. 5000) or a percentage of the part (e.g. '10%'), got {v!r}")
        if isinstance(v, int) and v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("max_regression")
    @classmethod
    def _relative_limits(cls, v: dict[str, str]) -> dict[str, str]:
        for metric, limit in v.items():
            if not _PERCENT.match(str(limit)):
                raise ValueError(f"max_regression.{metric}: expected a percentage such as '5%', got {limit!r}")
        return v


class SynthConfig(StrictModel):
    """Vendor synthesis (Vitis HLS / Vivado), run only where the tools are installed."""

    enabled: bool = False
    stages: list[Literal["csynth", "cosim", "export", "vsynth"]] = Field(default_factory=lambda: ["csynth"])
    timeout_s: int = Field(4 * 3600, gt=0)


def _section_of(raw: Any) -> ModelSection:
    """The ``model:`` mapping validated by its kind's section class; an unknown kind is a one-line error."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a mapping with 'kind' and that kind's keys, got {type(raw).__name__}")
    name = raw.get("kind")
    kind = model_kind(name) if isinstance(name, str) else None
    if kind is None:
        raise PydanticCustomError("model_kind", "expected one of: {kinds}; got {tag}",
                                  {"kinds": ", ".join(model_kind_names()), "tag": short_repr(name)})
    return kind.Section.model_validate(raw)


class BuildConfig(StrictModel):
    """A whole build recipe. ``source_path`` and ``source_hash`` are filled by ``load_config``."""

    name: str
    description: str = ""
    data: DataConfig = DataConfig()
    model: SerializeAsAny[ModelSection] = Field(default_factory=lambda: _section_of({"kind": "mlp"}))
    train: TrainConfig = TrainConfig()
    firmware: FirmwareConfig = FirmwareConfig()
    verify: VerifyConfig = VerifyConfig()
    budgets: BudgetsConfig = BudgetsConfig()
    synth: SynthConfig = SynthConfig()
    source_path: str | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_folder_name(cls, v: str) -> str:
        if not _SAFE_NAME.match(v) or ".." in v:
            raise ValueError(
                "expected 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit "
                f"(it becomes a folder name), got {v!r}"
            )
        return v

    @field_validator("model", mode="wrap")
    @classmethod
    def _kind_section(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> ModelSection:
        """``model:`` is validated against the section of the kind it names; errors keep their keys (model.hidden).

        ``kind`` defaults to mlp; ``model: {kind: K, K: {...}}`` (the earlier nested form) is lifted.
        """
        if isinstance(v, ModelSection):
            return v
        if isinstance(v, dict):
            v = {"kind": "mlp", **v}
            nested = v.get(v["kind"]) if isinstance(v["kind"], str) else None
            if isinstance(nested, dict):
                v = {**{k: x for k, x in v.items() if k != v["kind"]}, **nested}
        return _section_of(v)

    @model_validator(mode="after")
    def _backend_fits_model(self) -> BuildConfig:
        kind = model_kind(self.model.kind)
        assert kind is not None  # _kind_section validated the name
        if self.firmware.backend not in kind.backends:
            note = kind.backend_notes.get(self.firmware.backend)
            raise ValueError(
                f"key 'firmware.backend': {self.firmware.backend!r} cannot build model.kind {self.model.kind!r}; "
                f"expected one of: {', '.join(kind.backends)}" + (f" ({note})" if note else "")
            )
        return self

    @property
    def config_dir(self) -> Path:
        """Folder relative paths in the recipe are resolved against."""
        return Path(self.source_path).resolve().parent if self.source_path else Path.cwd()

    @property
    def project_dir(self) -> Path:
        """Where this build's project lives: ``<firmware.output_dir>/<name>``."""
        return Path(self.firmware.output_dir) / self.name

    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of the parsed recipe: equal recipes give equal hashes."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _model_section_at(raw: dict[str, Any]) -> Any:
    """Where an error sits in ``model:``, the section class is the kind's that the document names."""

    def section_at(loc: tuple[Any, ...]) -> type[ModelSection] | None:
        if loc != ("model",):
            return None
        name = (raw.get("model") or {}).get("kind", "mlp") if isinstance(raw.get("model"), dict) else None
        kind = model_kind(name) if isinstance(name, str) else None
        return kind.Section if kind else None

    return section_at


def _format_validation_error(path: Path, err: ValidationError, raw: dict[str, Any]) -> str:
    return pydantic_error_line(path, err, BuildConfig, section_at=_model_section_at(raw))


def parse_config(raw: Any, path: Path | str = "<config>", overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Validate an already-loaded YAML document; raises ``ConfigError`` with a one-line message."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping (key: value) at the top level, got {type(raw).__name__}")
    doc = deep_merge(raw, overrides or {})
    try:
        cfg = BuildConfig.model_validate({**doc, "source_path": str(path)})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err, doc)) from None
    _check_data_path(cfg, path)
    _check_model_section(cfg, path)
    return cfg


def _check_data_path(cfg: BuildConfig, path: Path) -> None:
    src = cfg.data.source
    if ":" in src and src.split(":", 1)[0] in ("builtin", "openml", "adc2021"):
        return  # adc2021:<folder> is checked when read (a folder of ADC2021 .h5 files)
    try:
        file = resolve_data_path(cfg)
        # hls4ml particle data comes as a folder of files; a folder is read only for particle data
        particles = cfg.data.n_particles is not None or cfg.data.particle_features is not None
        exists = file.is_file() or (particles and file.is_dir())
    except (OSError, ValueError):  # a NUL byte or an over-long name is not a path this system can hold
        raise ConfigError(f"{path}: key 'data.source': expected a path to a data file, got "
                          f"{short_repr(src)}") from None
    if not exists:
        raise ConfigError(
            f"{path}: key 'data.source': file {file} does not exist (expected a path relative to the YAML)"
        )


def _check_model_section(cfg: BuildConfig, path: Path) -> None:
    """The model kind's own checks that need the whole recipe (e.g. a model file that must exist), and
    whether it can take the data, where the data's shape is known without reading it."""
    kind = model_kind(cfg.model.kind)(cfg.model)  # type: ignore[misc]  (validated: the kind is loaded)
    why = kind.check_section(cfg)
    if why is not None:
        raise ConfigError(f"{path}: {why}")
    # builtin sources' shapes are known without reading them: a model that cannot take them fails here
    shape = data.input_shape(cfg.data.source, cfg.data.n_particles, cfg.data.particle_features)
    why = kind.check_data(shape, None) if shape is not None else None
    if why is not None:
        raise ConfigError(f"{path}: key 'model.kind': {why}")


def resolve_data_path(cfg: BuildConfig) -> Path:
    """Absolute path of a file ``data.source``, resolved against the YAML's folder."""
    return (cfg.config_dir / cfg.data.source).resolve()


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Read and validate a YAML build recipe.

    ``overrides`` is a nested dict merged over the file (the CLI uses it for ``--output-dir``).
    Raises ``ConfigError`` (one line: file, key, expected form) for anything malformed. YAML is read
    with ``safe_load``: object tags are rejected.
    """
    path = Path(path)
    return parse_config(read_yaml(path, "config file"), path, overrides)


def project_config(project_dir: Path) -> BuildConfig:
    """The recipe a built project was made from (its ``config.yaml``), without re-checking data paths.

    Raises ``ConfigError`` (one line) if the copy is missing or is not a valid recipe.
    """
    path = Path(project_dir) / "config.yaml"
    raw = read_yaml(path, "recipe copy (not a fastml project folder?)")
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(path, err, raw if isinstance(raw, dict) else {})) from None


def read_yaml(path: Path, what: str = "file") -> Any:
    """``yaml.safe_load`` of ``path`` (object tags rejected); ``ConfigError`` with the line if malformed."""
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                          f"{err.start}); expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read {what}: {err.strerror}") from None
    if not text.strip():
        raise ConfigError(f"{path}: {what} is empty; expected a YAML mapping (key: value)")
    try:
        return yaml.safe_load(text)
    except (ValueError, RecursionError) as err:  # e.g. a date such as 2024-02-30, or absurd nesting
        raise ConfigError(one_line(f"{path}: not valid YAML: {type(err).__name__}: {err}"[:300])) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(one_line(f"{path}: not valid YAML{where}: {problem}")) from None
