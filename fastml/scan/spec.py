"""Scan recipes: a base build recipe plus the keys to vary, expanded into validated build recipes.

A scan YAML (e.g. ``configs/jet_tagger_scan.yaml``)::

    name: jet_tagger_scan          # folder <output_dir>/<name>/ and point names <name>-000, -001 ...
    base: jet_tagger.yaml          # the build recipe every point starts from (relative to this file)
    fixed:                         # dotted keys set on every point
      train.epochs: 20
    scan:
      grid:                        # every combination of these values
        model.hidden: [[16], [32, 16]]
      points:                      # explicit list of points, crossed with the grid
        - {firmware.reuse_factor: 1}
      random:                      # per point, one draw of each parameter (reproducible via seed)
        samples: 4
        seed: 0
        params:
          train.beta.end: {log_uniform: [1.0e-6, 1.0e-4]}
    phase2: {build: pareto, front: lut, synth: false}
    cluster: {kind: slurm, jobs: 4, cores: 1, memory: 4GB}   # optional, needs fastml[cluster]

Points = grid combinations x explicit points x random samples. Keys are dotted paths into the
build recipe, so they follow whatever the recipe schema is (``model.hidden``, ``train.beta.end``);
a key the schema does not know fails the scan before anything runs, naming the point and the key.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .._internal.schema import deep_merge, pydantic_error_line
from ..errors import ConfigError
from ..recipe import BuildConfig, parse_config, read_yaml
from ..types import StrictModel

#: Keys a scan sets itself on every point: varying them would put two points in one folder.
_RESERVED = ("name", "firmware.output_dir")
#: More points than this is almost certainly a typo in a grid (and a scan folder nobody can read).
MAX_POINTS = 10_000


class RandomParam(StrictModel):
    """One randomly drawn value: exactly one of the four forms."""

    log_uniform: tuple[float, float] | None = None  # low, high (both > 0), drawn uniformly in log
    uniform: tuple[float, float] | None = None
    int_uniform: tuple[int, int] | None = None  # inclusive bounds
    choice: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RandomParam:
        given = [k for k in ("log_uniform", "uniform", "int_uniform", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("expected exactly one of log_uniform: [low, high], uniform: [low, high], "
                             f"int_uniform: [low, high] or choice: [values], got {given or 'none'}")
        low_high = self.log_uniform or self.uniform or self.int_uniform
        if low_high is not None and low_high[0] > low_high[1]:
            raise ValueError(f"low must be <= high, got {list(low_high)}")
        if self.log_uniform is not None and self.log_uniform[0] <= 0:
            raise ValueError(f"log_uniform bounds must be > 0, got {list(self.log_uniform)}")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self

    def draw(self, rng: Any) -> Any:
        if self.log_uniform is not None:
            lo, hi = self.log_uniform
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.uniform is not None:
            return float(rng.uniform(*self.uniform))
        if self.int_uniform is not None:
            return int(rng.integers(self.int_uniform[0], self.int_uniform[1] + 1))
        assert self.choice is not None
        return self.choice[int(rng.integers(len(self.choice)))]


class RandomSpec(StrictModel):
    samples: int = Field(gt=0)
    seed: int = 0
    params: dict[str, RandomParam] = Field(min_length=1)


class VarySpec(StrictModel):
    """What varies between points (see the module docstring)."""

    grid: dict[str, list[Any]] = Field(default_factory=dict)
    points: list[dict[str, Any]] = Field(default_factory=list)
    random: RandomSpec | None = None

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid key {key!r} has no values (expected a non-empty list)")
        return v

    @model_validator(mode="after")
    def _each_key_once(self) -> VarySpec:
        seen: dict[str, str] = {}
        for where, keys in (("grid", list(self.grid)),
                            ("points", sorted({k for p in self.points for k in p})),
                            ("random", list(self.random.params) if self.random else [])):
            for key in keys:
                if key in seen and seen[key] != where:
                    raise ValueError(f"key {key!r} is varied both in {seen[key]} and in {where}")
                seen[key] = where
                if key in _RESERVED:
                    raise ValueError(f"key {key!r} is set by the scan itself and cannot be varied")
        return self

    def keys(self) -> list[str]:
        """The varied keys in table order: grid, explicit points, random."""
        out: list[str] = list(self.grid)
        for p in self.points:
            out += [k for k in p if k not in out]
        out += [k for k in (self.random.params if self.random else {}) if k not in out]
        return out


class Phase2Spec(StrictModel):
    """Which points get full firmware (C-sim/RTL verified) after the train-and-estimate phase."""

    build: Literal["pareto", "all", "none"] = "pareto"
    front: Literal["lut", "ebops"] = "lut"  # x axis of the accuracy front: da4ml-estimated LUTs or HGQ2 EBOPs
    synth: bool = False  # also run `fastml synth` (Vitis/Vivado) on the built points, where installed


class ClusterSpec(BaseModel):
    """A dask-jobqueue cluster (``fastml[cluster]``): ``kind`` and ``jobs``; every other key goes to the
    dask-jobqueue class as is (``cores``, ``memory``, ``queue``, ``walltime``, ``job_extra_directives`` ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Literal["slurm", "htcondor"]
    jobs: int = Field(1, gt=0)

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ScanSpec(StrictModel):
    """A whole scan recipe. ``source_path`` is filled by ``load_scan``."""

    name: str
    base: str
    description: str = ""
    output_dir: str | None = None  # parent of the scan folder; default: the base recipe's firmware.output_dir
    fixed: dict[str, Any] = Field(default_factory=dict)
    scan: VarySpec
    phase2: Phase2Spec = Phase2Spec()
    cluster: ClusterSpec | None = None
    source_path: str | None = Field(None, exclude=True)

    @field_validator("name")
    @classmethod
    def _safe_folder_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,55}$", v) or ".." in v:
            raise ValueError("expected 1-56 letters, digits, '_', '-' or '.', starting with a letter or digit "
                             f"(it names the scan folder and, with -NNN, every point), got {v!r}")
        return v

    @field_validator("fixed")
    @classmethod
    def _not_reserved(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            if key in _RESERVED:
                raise ValueError(f"key {key!r} is set by the scan itself")
        return v

    @property
    def base_path(self) -> Path:
        here = Path(self.source_path).resolve().parent if self.source_path else Path.cwd()
        return (here / self.base).resolve()


@dataclass(frozen=True)
class ScanPoint:
    """One point: its name, the values it varies, and its validated build recipe."""

    index: int
    name: str
    varied: dict[str, Any]
    cfg: BuildConfig
    overrides: dict[str, Any]  # nested dict merged over the base recipe (what a worker re-applies)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.varied.items())


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"train.beta.end": 1e-5}`` -> ``{"train": {"beta": {"end": 1e-5}}}`` (later keys win)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def parse_scan(raw: Any, path: Path | str = "<scan>") -> ScanSpec:
    """Validate an already-loaded scan YAML document; ``ConfigError`` (one line) if malformed."""
    path = Path(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping with 'name', 'base' and 'scan', got {type(raw).__name__}")
    if "scan" in raw and "base" not in raw and "data" in raw:
        raise ConfigError(f"{path}: key 'base': missing; a scan YAML names its build recipe with "
                          "'base: <recipe>.yaml' (relative to the scan file) and lists what varies under 'scan:'")
    try:
        spec = ScanSpec.model_validate({**raw, "source_path": str(path)})
    except ValidationError as err:
        raise ConfigError(pydantic_error_line(path, err, ScanSpec)) from None
    if not spec.base_path.is_file():
        raise ConfigError(f"{path}: key 'base': build recipe {spec.base_path} does not exist "
                          "(expected a path relative to the scan YAML)")
    return spec


def load_scan(path: str | Path) -> ScanSpec:
    """Read and validate a scan YAML (not yet its points: see ``expand``)."""
    path = Path(path)
    return parse_scan(read_yaml(path, "scan file"), path)


def varied_values(spec: ScanSpec) -> list[dict[str, Any]]:
    """The varied values of every point, in point order (grid x explicit points x random samples)."""
    vary = spec.scan
    grid = [dict(zip(vary.grid, combo, strict=True)) for combo in itertools.product(*vary.grid.values())]
    explicit = [dict(p) for p in vary.points] or [{}]
    n_random = vary.random.samples if vary.random else 1
    total = len(grid) * len(explicit) * n_random
    if total > MAX_POINTS:
        raise ConfigError(f"{spec.source_path}: key 'scan': {total} points (more than {MAX_POINTS}); "
                          "expected a smaller grid")
    import numpy as np

    rng = np.random.default_rng(vary.random.seed if vary.random else 0)
    out: list[dict[str, Any]] = []
    for g, e in itertools.product(grid, explicit):
        for _ in range(n_random):
            drawn = {k: p.draw(rng) for k, p in vary.random.params.items()} if vary.random else {}
            out.append({**g, **e, **drawn})
    return out


def scan_dir(spec: ScanSpec, output_dir: str | Path | None = None) -> Path:
    """Absolute folder of the scan: ``<output_dir>/<name>``; ``output_dir`` is --output-dir, then the
    scan's ``output_dir``, then the base recipe's ``firmware.output_dir`` (relative to the working directory,
    as for ``fastml build``)."""
    parent = output_dir or spec.output_dir
    if parent is None:
        base = read_yaml(spec.base_path, "build recipe")
        parent = ((base or {}).get("firmware") or {}).get("output_dir", "hls_projects") if isinstance(base, dict) \
            else "hls_projects"
    return (Path(parent) / spec.name).resolve()


def expand(spec: ScanSpec, output_dir: str | Path | None = None) -> list[ScanPoint]:
    """Every point as a validated build recipe; the first bad point raises ``ConfigError`` naming it and the key.

    Each point is the base recipe with ``fixed`` then the point's varied keys merged over it, its own
    ``name`` (``<scan name>-NNN``) and ``firmware.output_dir`` = the scan folder, so every point is an
    ordinary project ``<scan folder>/<point name>/`` that ``fastml check`` and ``fastml synth`` take.
    """
    base_raw = read_yaml(spec.base_path, "build recipe")
    folder = scan_dir(spec, output_dir)
    values = varied_values(spec)
    width = max(3, len(str(len(values) - 1)))
    points: list[ScanPoint] = []
    for i, varied in enumerate(values):
        name = f"{spec.name}-{i:0{width}d}"
        overrides = deep_merge(nested(spec.fixed), nested(varied))
        overrides = deep_merge(overrides, {"name": name, "firmware": {"output_dir": str(folder)}})
        try:
            cfg = parse_config(base_raw, spec.base_path, overrides)
        except ConfigError as err:
            where = f"point {name} ({', '.join(f'{k}={_short(v)}' for k, v in varied.items()) or 'fixed keys only'})"
            raise ConfigError(f"{spec.source_path}: {where}: {err}") from None
        points.append(ScanPoint(index=i, name=name, varied=varied, cfg=cfg, overrides=overrides))
    return points


