"""`backbone:` — a pretrained network under the spec's layers (transfer learning).

Placeholder interface (the transfer-learning issue fills it in): a BackboneSpec is a layer-like
node the graph compiler puts between the input and ``layers:``; it must answer output_shape,
params and non_trainable without TensorFlow.
"""

from __future__ import annotations

from typing import Literal

from ..shapes import Shape
from .layers import LayerSpec


class BackboneSpec(LayerSpec):
    """A pretrained model (a keras.applications name or a .keras file) used as a feature extractor."""

    kind: Literal["backbone"] = "backbone"
    model: str
    weights: str = "imagenet"
    trainable: bool = False

    def output_shape(self, inputs: list[Shape]) -> Shape:
        raise NotImplementedError

    def params(self, inputs: list[Shape]) -> int:
        raise NotImplementedError
