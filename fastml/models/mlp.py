"""``kind: mlp`` — an HGQ2 multilayer perceptron on a feature vector (e.g. the 16 HLF jet features)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field

from .network import HGQSection, NetworkKind, quantizer_scopes

if TYPE_CHECKING:
    import keras


class MLPSection(HGQSection):
    """HGQ2 multilayer perceptron: hidden widths, activation and quantiser settings."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(gt=0, le=4096)]] = Field(default=[64, 32, 32])
    activation: Literal["relu", "linear"] = "relu"
    batchnorm: bool = True  # fused into the dense layer (QEinsumDenseBatchnorm), free in firmware


def build_mlp(section: MLPSection, n_inputs: int, n_outputs: int, name: str = "mlp") -> keras.Model:
    """An HGQ2 MLP: ``section.hidden`` quantised dense layers (batch norm fused) and a linear output.

    Every layer quantises its input with a trainable per-element fixed-point quantiser (so the first
    layer's is the input quantiser); weights are trainable-bitwidth fixed point. The EBOPs
    regulariser is on, with strength ``beta`` scheduled during training (starting at ``section.beta0``).
    Outputs are logits (no softmax: it is monotonic, so the trigger decision does not need it).
    """
    import keras
    from hgq.layers import QDense

    scopes = quantizer_scopes(section)
    with scopes[0], scopes[1], scopes[2]:
        inputs = keras.Input((n_inputs,), name="features")
        x = dense_stack(inputs, section.hidden, section.activation, section.batchnorm, prefix="dense")
        outputs = QDense(n_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def dense_stack(x: Any, widths: Sequence[int], activation: str, batchnorm: bool, prefix: str) -> Any:
    """Quantised dense layers of ``widths`` on ``x`` (under the caller's quantiser scopes); the last one's output.

    With ``batchnorm`` each is a ``QEinsumDenseBatchnorm`` named ``{prefix}_bn_{i}`` (batch norm fused into
    the weights: free in firmware), else a ``QDense`` named ``{prefix}_{i}``. Shared by the MLP and the
    autoencoder's encoder, which differ only in the names.
    """
    from hgq.layers import QDense, QEinsumDenseBatchnorm

    for i, width in enumerate(widths):
        if batchnorm:
            x = QEinsumDenseBatchnorm("bc,cd->bd", width, bias_axes="d", activation=activation,
                                      name=f"{prefix}_bn_{i}")(x)
        else:
            x = QDense(width, activation=activation, name=f"{prefix}_{i}")(x)
    return x


def build_float_mlp(section: MLPSection, n_inputs: int, n_outputs: int, name: str = "mlp_float") -> keras.Model:
    """The unquantised twin of ``build_mlp`` (same widths, activations and batch norm)."""
    import keras

    inputs = keras.Input((n_inputs,), name="features")
    x = inputs
    for i, width in enumerate(section.hidden):
        x = keras.layers.Dense(width, use_bias=not section.batchnorm, name=f"dense_{i}")(x)
        if section.batchnorm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(section.activation)(x)
    outputs = keras.layers.Dense(n_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


class MLP(NetworkKind):
    name = "mlp"
    Section = MLPSection
    summary = "HGQ2 multilayer perceptron on a feature vector"
    section: MLPSection

    def build(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "mlp") -> keras.Model:
        return build_mlp(self.section, input_shape[0], n_outputs, name=name)

    def build_float(self, input_shape: tuple[int, ...], n_outputs: int, name: str = "mlp_float") -> keras.Model:
        return build_float_mlp(self.section, input_shape[0], n_outputs, name=name)
