"""What every model kind provides, and the registry that finds a kind by its ``model.kind`` name.

A kind is one class (a subclass of ``ModelKind``) in one module; defining the class registers it with
the recipe (the metaclass does, as in da4ml's hgq2 converter). Its recipe section is a pydantic class
(``ModelKind.Section``, a ``fastml.recipe.ModelSection``) with ``kind: Literal["<name>"]``: the recipe's
``model:`` mapping is validated against the section of the kind it names, so adding a kind touches one
file (and, outside fastml, one entry point: ``fastml._internal.plugins``).

Kind modules import Keras, HGQ2, xgboost... only inside methods: ``fastml validate`` loads the kind a
recipe names and must stay fast.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..recipe import ModelSection, model_kind, model_kind_names, register_model_kind
from ..types import InputLayout

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig


@dataclass
class TrainedModel:
    """A trained (or loaded) model ready for conversion.

    Guarantees: ``predict_quantized(x)`` gives exactly the outputs the firmware must reproduce (for
    BDTs the float ensemble's margin; the conifer backend builds its fixed-point reference from it),
    with shape (events, outputs); ``model`` is the quantised Keras model for network kinds
    (``family == "network"``) or the fitted ensemble (``"trees"``).
    """

    kind: str
    model: Any
    predict_quantized: Callable[[np.ndarray], np.ndarray]
    predict_float: Callable[[np.ndarray], np.ndarray] | None
    n_classes: int
    ebops: float | None = None
    float_model: Any = None  # the unquantised twin (network kinds), when trained
    history: dict[str, list[float]] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)  # which checkpoint was kept, and why
    wall_s: float = 0.0
    family: Literal["network", "trees"] = "network"


class _KindRegistry(ABCMeta):
    """Registers every concrete ``ModelKind`` subclass under its ``name`` with the recipe."""

    def __new__(mcls, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kw: Any) -> type:
        cls = super().__new__(mcls, cls_name, bases, namespace, **kw)
        if namespace.get("name"):
            register_model_kind(cls)  # type: ignore[arg-type]
        return cls


class ModelKind(metaclass=_KindRegistry):
    """One model kind: its recipe section, what data and backends it fits, and how it is trained.

    Subclasses set ``name`` (the ``model.kind`` value), ``Section``, ``family``, ``backends`` (the
    ``firmware.backend`` values that can build it) and ``layout`` (the input it takes), and implement
    ``train``.
    """

    name: ClassVar[str] = ""
    Section: ClassVar[type[ModelSection]]
    family: ClassVar[Literal["network", "trees"]] = "network"
    backends: ClassVar[tuple[str, ...]] = ("hls4ml", "rtl")
    layout: ClassVar[InputLayout | None] = "features"  # None: whatever the model file says
    #: Why a backend this kind cannot use cannot build it (shown in the one-line config error).
    backend_notes: ClassVar[dict[str, str]] = {}
    summary: ClassVar[str] = ""

    def __init__(self, section: ModelSection) -> None:
        self.section = section
        #: Raises a one-line ``ConfigError`` naming a layer the recipe's backend cannot build: set by
        #: ``fastml.models.train`` from the backend (models never import backends); None: checked at conversion.
        self.check_layers: Callable[[Any, str], None] | None = None

    def task_metrics(self, trained: TrainedModel, scores: dict[str, np.ndarray], labels: np.ndarray,
                     data: Dataset) -> tuple[dict[str, float | None], dict[str, Any]] | None:
        """The report's figures for this kind's task, from ``scores`` ({float|quantized|firmware: outputs} on
        the verified test events, whose true classes are ``labels``): None = classification (accuracy and
        per-class AUC, the pipeline's default); otherwise (headline per level -> ``report.accuracy``, the
        ``report.task`` section). See ``fastml.report`` for the task sections.
        """
        return None

    def check_section(self, cfg: BuildConfig) -> str | None:
        """Cross-section checks that need the whole recipe; returns why it does not fit, or None."""
        return None

    def check_data(self, input_shape: tuple[int, ...], n_classes: int | None) -> str | None:
        """Why data of ``input_shape`` per event (and ``n_classes``, None if unknown) does not fit, or None."""
        if self.layout == "features" and len(input_shape) != 1:
            if len(input_shape) == 2:
                hint = "a particle list: use a particle model such as deepsets or attention"
            else:  # an image with channels, or any other array per event a user's file holds
                hint = (f"an array per event: write x flat as (events, {int(np.prod(input_shape))}), or import a "
                        f"model that takes {input_shape} (model.kind keras or qonnx)")
            return (f"model.kind {self.name!r} takes one feature vector (features,) per event, but the data has "
                    f"events of shape {input_shape} ({hint})")
        if self.layout == "particles" and len(input_shape) != 2:
            return (f"model.kind {self.name!r} takes a list of particles per event (particles, features), but the "
                    f"data has events of shape {input_shape} (use data.source builtin:jets_constituents or "
                    "a particle file)")
        return None

    @abstractmethod
    def train(self, cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True
              ) -> TrainedModel:
        """Train (or load) the model on ``data``; ``epochs`` overrides ``train.epochs`` (``--quick``)."""

    def save(self, trained: TrainedModel, model_dir: Path) -> list[Path]:
        """Write the trained model into ``model_dir`` (the project's ``model/``); returns the files."""
        written: list[Path] = []
        if trained.family == "network":
            trained.model.save(model_dir / "model.keras")
            written.append(model_dir / "model.keras")
            if trained.float_model is not None:
                trained.float_model.save(model_dir / "float_model.keras")
                written.append(model_dir / "float_model.keras")
        return written


def registered_kinds() -> dict[str, type[ModelKind]]:
    """Every model kind by name, built-in and registered by other packages (each loaded)."""
    return {name: model_kind(name) for name in model_kind_names()}  # type: ignore[misc]
