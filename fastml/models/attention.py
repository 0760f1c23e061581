"""``kind: attention`` — a self-attention jet tagger on particle constituents (events, particles, features).

Each particle is embedded by a quantised per-particle dense layer; ``blocks`` rounds of HGQ2
multi-head self-attention (softmax by lookup tables) with a residual connection let every particle
see the others; a pooling over particles and a dense head give the logits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from .deepsets import Width, dense_head, per_particle_dense, pooling_layer
from .network import HGQSection, NetworkKind

if TYPE_CHECKING:
    import keras


class AttentionSection(HGQSection):
    """Embedding width, attention heads and blocks, pooling, and the dense head's widths."""

    kind: Literal["attention"] = "attention"
    embed: Width = 16
    heads: Annotated[int, Field(gt=0, le=16)] = 2
    key_dim: Width = 8
    blocks: Annotated[int, Field(gt=0, le=8)] = 1
    pooling: Literal["mean", "max"] = "mean"
    head: list[Width] = Field(default=[32])
    activation: Literal["relu", "linear"] = "relu"
    batchnorm: bool = True


class Attention(NetworkKind):
    name = "attention"
    Section = AttentionSection
    layout = "particles"
    summary = "multi-head self-attention tagger on particle constituents"
    section: AttentionSection
    backends = ("rtl",)
    backend_notes: ClassVar[dict[str, str]] = {
        "hls4ml": "hls4ml 1.3 cannot convert HGQ2 0.2's QMultiHeadAttention (its handler is registered as "
                  "hgq.layers.multi_head_attention, HGQ2 0.2 defines hgq.layers.attn.mha, and the generic "
                  "fallback fails on duplicate tensor names); da4ml's RTL takes it"}

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        import keras
        from hgq.layers import QAdd, QMultiHeadAttention

        s = self.section
        inputs = keras.Input(input_shape, name="particles")
        x = per_particle_dense(s.embed, input_shape[0], s.activation, s.batchnorm, "embed")(inputs)
        for b in range(s.blocks):
            attended = QMultiHeadAttention(num_heads=s.heads, key_dim=s.key_dim, name=f"mha_{b}")(x, x)
            x = QAdd(name=f"residual_{b}")([x, attended])
        x = pooling_layer(s.pooling)(x)
        return keras.Model(inputs, dense_head(x, s.head, n_outputs, s.activation), name=name)
