"""Model stage: HGQ2 quantised networks (and their float twins) built from the recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .keras_backend import ensure_backend

ensure_backend()

import keras  # noqa: E402

if TYPE_CHECKING:
    from .config import MLPConfig


def build_mlp(cfg: MLPConfig, n_inputs: int, n_outputs: int, name: str = "mlp") -> keras.Model:
    """An HGQ2 MLP: ``cfg.hidden`` quantised dense layers (batch norm fused) and a linear output.

    Every layer quantises its input with a trainable per-element fixed-point quantiser (so the first
    layer's is the input quantiser); weights are trainable-bitwidth fixed point. The EBOPs
    regulariser is on, with strength ``beta`` scheduled during training (starting at ``cfg.beta0``).
    Outputs are logits (no softmax: it is monotonic, so the trigger decision does not need it).
    """
    from hgq.config import LayerConfigScope, QuantizerConfigScope
    from hgq.layers import QDense, QEinsumDenseBatchnorm

    with (
        QuantizerConfigScope(place="all", default_q_type="kbi", overflow_mode=cfg.weight_overflow),
        QuantizerConfigScope(place="datalane", default_q_type="kif", overflow_mode=cfg.datalane_overflow),
        LayerConfigScope(enable_ebops=True, beta0=cfg.beta0),
    ):
        inputs = keras.Input((n_inputs,), name="features")
        x = inputs
        for i, width in enumerate(cfg.hidden):
            if cfg.batchnorm:
                x = QEinsumDenseBatchnorm("bc,cd->bd", width, bias_axes="d", activation=cfg.activation,
                                          name=f"dense_bn_{i}")(x)
            else:
                x = QDense(width, activation=cfg.activation, name=f"dense_{i}")(x)
        outputs = QDense(n_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def build_float_mlp(cfg: MLPConfig, n_inputs: int, n_outputs: int, name: str = "mlp_float") -> keras.Model:
    """The unquantised twin of ``build_mlp`` (same widths, activations and batch norm)."""
    inputs = keras.Input((n_inputs,), name="features")
    x = inputs
    for i, width in enumerate(cfg.hidden):
        x = keras.layers.Dense(width, use_bias=not cfg.batchnorm, name=f"dense_{i}")(x)
        if cfg.batchnorm:
            x = keras.layers.BatchNormalization(name=f"bn_{i}")(x)
        x = keras.layers.Activation(cfg.activation)(x)
    outputs = keras.layers.Dense(n_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
