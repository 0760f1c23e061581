"""``kind: lut_mlp`` — a lookup-table network on a feature vector, from HGQ2's table layers (``QDenseT``).

Every input→output connection of a ``QDenseT`` layer is a small learned function (a sub-network of
``n_hl`` layers of ``d_hl`` units during training) that becomes one lookup table in firmware, indexed
by the quantised input; an output is the sum of its tables. No multiplier is left in the firmware.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from .network import HGQSection, NetworkKind

if TYPE_CHECKING:
    import keras


class LUTMLPSection(HGQSection):
    """Widths of the table layers, and the size of each connection's training-time sub-network."""

    kind: Literal["lut_mlp"] = "lut_mlp"
    hidden: list[Annotated[int, Field(gt=0, le=256)]] = Field(default=[16])
    n_hl: Annotated[int, Field(ge=0, le=4)] = 1
    d_hl: Annotated[int, Field(gt=0, le=64)] = 8
    subnn_activation: Literal["tanh", "relu", "sigmoid"] = "tanh"


class LUTMLP(NetworkKind):
    name = "lut_mlp"
    Section = LUTMLPSection
    summary = "lookup-table network (HGQ2 QDenseT) on a feature vector"
    section: LUTMLPSection
    backends = ("rtl",)
    backend_notes: ClassVar[dict[str, str]] = {
        "hls4ml": "hls4ml 1.3's HGQ2 front end has no converter for table layers (hgq.layers.table.QDenseT), "
                  "only its generic da4ml fallback, which fastml has not verified; da4ml's RTL takes them"}

    def architecture(self, input_shape: tuple[int, ...], n_outputs: int, name: str) -> keras.Model:
        import keras
        from hgq.layers import QDenseT

        s = self.section
        inputs = keras.Input(input_shape, name="features")
        x = inputs
        for i, width in enumerate([*s.hidden, n_outputs]):
            last = i == len(s.hidden)
            x = QDenseT(width, n_hl=s.n_hl, d_hl=s.d_hl, subnn_activation=s.subnn_activation,
                        name="logits" if last else f"table_{i}")(x)
        return keras.Model(inputs, x, name=name)
