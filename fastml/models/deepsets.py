"""``kind: deepsets`` — a Deep Sets jet tagger on particle constituents (events, particles, features).

phi (the same small quantised network on every particle) → a permutation-invariant pooling over
particles → rho (a quantised MLP) → logits. With ``data.n_particles`` a power of two, mean pooling
is a shift in firmware (no divider).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .mlp import dense_stack
from .network import HGQSection, NetworkKind

if TYPE_CHECKING:
    import keras

Width = Annotated[int, Field(gt=0, le=1024)]


class DeepSetsSection(HGQSection):
    """Per-particle widths (``phi``), pooling, and the widths after pooling (``rho``)."""

    kind: Literal["deepsets"] = "deepsets"
    phi: list[Width] = Field(default=[32, 32], min_length=1)
    pooling: Literal["mean", "max"] = "mean"
    rho: list[Width] = Field(default=[32])
    activation: Literal["relu", "linear"] = "relu"
    batchnorm: bool = True  # fused into the per-particle dense layers, free in firmware


def pooling_layer(pooling: str, name: str = "pool") -> keras.layers.Layer:
    """HGQ2 global pooling over the particle axis (mean or max)."""
    from hgq.layers import QGlobalAveragePooling1D, QGlobalMaxPooling1D

    return (QGlobalAveragePooling1D if pooling == "mean" else QGlobalMaxPooling1D)(name=name)


def per_particle_dense(width: int, n_particles: int, activation: str, batchnorm: bool, name: str) -> keras.layers.Layer:
    """The same quantised dense layer applied to every particle (an einsum over the feature axis)."""
    from hgq.layers import QEinsumDense, QEinsumDenseBatchnorm

    layer = QEinsumDenseBatchnorm if batchnorm else QEinsumDense
    return layer("bnc,cd->bnd", (n_particles, width), bias_axes="d", activation=activation, name=name)


def dense_head(x: keras.KerasTensor, widths: list[int], n_outputs: int, activation: str) -> keras.KerasTensor:
    """Quantised dense layers after pooling (``rho_{i}``), then the logits."""
    from hgq.layers import QDense


    x = dense_stack(x, widths, activation, batchnorm=False, prefix="rho")
    return QDense(n_outputs, name="logits")(x)


class DeepSets(NetworkKind):
    name = "deepsets"
    Section = DeepSetsSection
    layout = "particles"
    summary = "Deep Sets tagger on particle constituents"
    section: DeepSetsSection

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        import keras

        s = self.section
        inputs = keras.Input(input_shape, name="particles")
        x = inputs
        for i, width in enumerate(s.phi):
            x = per_particle_dense(width, input_shape[0], s.activation, s.batchnorm, f"phi_{i}")(x)
        x = pooling_layer(s.pooling)(x)
        return keras.Model(inputs, dense_head(x, s.rho, n_outputs, s.activation), name=name)
