"""Model stage: one module per model kind, found through one registry.

=============  ==============================  =============================================  ==================
``model.kind`` module                          what it is                                     firmware backends
=============  ==============================  =============================================  ==================
``mlp``        ``fastml/models/mlp.py``        HGQ2 MLP on a feature vector                   hls4ml, rtl
``lut_mlp``    ``fastml/models/lut_mlp.py``    lookup-table network (HGQ2 table layers)       rtl
``deepsets``   ``fastml/models/deepsets.py``   Deep Sets on particle constituents             hls4ml, rtl
``attention``  ``fastml/models/attention.py``  multi-head self-attention on constituents      rtl
``bdt``        ``fastml/models/bdt.py``        boosted decision trees (xgboost, sklearn)      conifer
``autoencoder`` ``fastml/models/autoencoder.py``  anomaly-detection autoencoder (firmware: encoder+score) rtl, hls4ml
``conv``       ``fastml/models/conv.py``       conv net on calorimeter regions (teacher-student)  rtl, hls4ml
``keras``      ``fastml/models/keras_model.py``  any Keras model file (content-sniffed; float: quantize) hls4ml, rtl
``qkeras``     ``fastml/models/qkeras_model.py`` a QKeras / HGQ 1 proxy file, rebuilt as HGQ2    hls4ml
``qonnx``      ``fastml/models/qonnx_model.py``  a QONNX .onnx (Brevitas/FINN), hls4ml or alkaid     hls4ml, rtl
=============  ==============================  =============================================  ==================

Every kind is a ``ModelKind`` subclass (``fastml.models.base``) registered by defining it; its
recipe section (``model:`` in the YAML) is its ``Section`` class. A kind's module is imported when a
recipe names it (``fastml.recipe.model_kind``), never all of them up front. ``train(cfg, data)`` trains
whatever the recipe names. Kind modules import their heavy libraries (Keras, xgboost) lazily.
Models never import a backend: what a backend needs of a model is on ``TrainedModel``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..recipe import ModelSection, model_kind
from ..types import InputLayout
from .base import ModelKind, TrainedModel, registered_kinds

if TYPE_CHECKING:
    from ..data import Dataset
    from ..recipe import BuildConfig

__all__ = ["InputLayout", "ModelKind", "ModelSection", "TrainedModel", "kind_of", "registered_kinds", "train"]


def kind_of(cfg: BuildConfig) -> ModelKind:
    """The model kind object for a recipe's ``model`` section."""
    kind = model_kind(cfg.model.kind)
    assert kind is not None and issubclass(kind, ModelKind)  # a validated recipe names a loaded kind
    return kind(cfg.model)


def train(cfg: BuildConfig, data: Dataset, epochs: int | None = None, progress: bool = True,
          check_layers: Callable[[Any, str], None] | None = None) -> TrainedModel:
    """Train (or load) the model the recipe describes; ``epochs`` overrides ``train.epochs`` (``--quick``).

    Raises ``ConfigError`` (one line) if the data does not fit the model (e.g. a particle model on
    a feature vector), before any training. ``check_layers`` (the backend's, ``fastml.backends.layer_check``)
    is run on a model the kind loads or rebuilds before it trains on it.
    """
    kind = kind_of(cfg)
    kind.check_layers = check_layers
    why = kind.check_data(tuple(data.x_train.shape[1:]), data.n_classes)
    if why is not None:
        raise ConfigError(f"{cfg.source_path or '<config>'}: key 'model.kind': {why}")
    return kind.train(cfg, data, epochs=epochs, progress=progress)
