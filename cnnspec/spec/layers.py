"""One class per primitive layer kind, each with its shape, parameter and MAC rules.

A class declares its ``kind`` tag, the order of its positional notation values
(``positional``) and three pure functions of its input shapes. Adding a kind means adding a
class here (a sliding window in :mod:`.windows`, a weightless reshaping in :mod:`.layout`),
listing it in :data:`PRIMITIVES`, and giving it a builder in ``cnnspec.build``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from .. import shapes
from ..shapes import Shape, ShapeError, fmt, prod
from .layer_base import LayerSpec as LayerSpec
from .layer_base import check_dilation as check_dilation
from .layer_base import fmt_value as fmt_value
from .layer_base import spatial_input
from .layout import (
    CropSpec,
    PermuteSpec,
    ReshapeSpec,
    ResizeSpec,
    ShuffleSpec,
    UpsampleSpec,
    ZeroPadSpec,
)
from .types import Activation
from .windows import (
    AvgPoolSpec,
    ConvSpec,
    ConvTransposeSpec,
    DepthwiseConvSpec,
    GlobalAvgPoolSpec,
    GlobalL2PoolSpec,
    GlobalMaxPoolSpec,
    L2PoolSpec,
    MaxPoolSpec,
    SeparableConvSpec,
)
from .windows import GlobalPoolSpec as GlobalPoolSpec
from .windows import Offsets as Offsets
from .windows import PoolSpec as PoolSpec
from .windows import WindowSpec as WindowSpec

#: Keras' default epsilon (keras.config.epsilon()): the smallest divisor its layers keep.
EPSILON = 1e-7


class DenseSpec(LayerSpec):
    """Fully connected layer with ``units`` outputs."""

    kind: Literal["dense"] = "dense"
    units: PositiveInt
    act: Activation | None = None
    bias: bool = True
    pointwise: bool = Field(
        False, description="allow a spatial input: applied at every position (like a 1x1 conv)"
    )
    positional: ClassVar = ("units",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        if len(shape) > 1 and not self.pointwise:
            raise ShapeError(
                f"dense needs a flat input but follows a spatial tensor of shape {fmt(shape)} without flatten",
                "add '- flatten' or '- gavgpool' before it (or pointwise: true)",
            )
        return (*shape[:-1], self.units)

    def params(self, inputs: list[Shape]) -> int:
        return inputs[0][-1] * self.units + (self.units if self.bias else 0)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return prod(inputs[0]) * self.units


class FlattenSpec(LayerSpec):
    """Flatten a spatial tensor into a vector."""

    kind: Literal["flatten"] = "flatten"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return (prod(inputs[0]),)


class DropoutSpec(LayerSpec):
    """Dropout with the given rate (training only).

    ``noise_shape`` (batch axis included, as Keras) drops whole slices: ``[null, 1, 1, 1]``
    drops a sample's entire feature map (EfficientNet's drop-connect).
    """

    kind: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0.0, lt=1.0)
    noise_shape: list[PositiveInt | None] | None = Field(
        None, description="shape of the drop mask, batch axis first (null: as the input)"
    )
    positional: ClassVar = ("rate",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        ns = self.noise_shape
        if ns and ns[0] is not None:
            # A number there fixes the batch size: training fails with an InvalidArgumentError
            # at any other (the last batch, evaluate, predict).
            rest = ", ".join("null" if n is None else str(n) for n in ns[1:])
            raise ShapeError(
                f"the batch axis (the first) of noise_shape must be null, received noise_shape={ns}",
                f"write noise_shape=[null, {rest}]: batches differ in size",
            )
        if ns is not None:
            if len(ns) != len(shape) + 1:
                raise ShapeError(
                    f"noise_shape has {len(ns)} axes but the input has {len(shape) + 1} "
                    f"(batch included), received noise_shape={ns}",
                    f"give {len(shape) + 1} values, the batch axis first (null)",
                )
            for n, d in zip(ns[1:], shape, strict=True):
                if n is not None and n not in (1, d):
                    raise ShapeError(
                        f"noise_shape sizes must be 1, null or the input's size ({fmt(shape)}), received {ns}",
                        "use 1 on the axes a mask value is shared along",
                    )
        return shape


class DropPathSpec(LayerSpec):
    """Stochastic depth: drops a whole sample's branch with probability ``rate`` (training only).

    Put on a residual body (or written as ``residual: {..., drop_path: 0.1}``); the survivors
    are scaled by 1 / (1 - rate), so inference is the identity.
    """

    kind: Literal["droppath"] = "droppath"
    rate: float = Field(ge=0.0, lt=1.0)
    positional: ClassVar = ("rate",)


class BatchNormSpec(LayerSpec):
    """Batch normalisation over the channel axis."""

    kind: Literal["bn"] = "bn"
    eps: float = Field(1e-3, gt=0)
    momentum: float = Field(0.99, gt=0, lt=1)
    center: bool = True
    scale: bool = True

    def params(self, inputs: list[Shape]) -> int:
        c = inputs[0][-1]
        return c * (int(self.center) + int(self.scale)) + 2 * c

    def non_trainable(self, inputs: list[Shape]) -> int:
        return 2 * inputs[0][-1]


class LayerNormSpec(LayerSpec):
    """Layer normalisation over the channel axis (ConvNeXt)."""

    kind: Literal["layernorm"] = "layernorm"
    eps: float = Field(1e-3, gt=0)

    def params(self, inputs: list[Shape]) -> int:
        return 2 * inputs[0][-1]


class LayerScaleSpec(LayerSpec):
    """A learnable per-channel scale, initialised to ``init`` (ConvNeXt's LayerScale)."""

    kind: Literal["layerscale"] = "layerscale"
    init: float = Field(1e-6, description="initial value of every channel's scale")
    positional: ClassVar = ("init",)

    def params(self, inputs: list[Shape]) -> int:
        return inputs[0][-1]

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return prod(output)


class LRNSpec(LayerSpec):
    """Local response normalisation across channels (AlexNet, GoogLeNet)."""

    kind: Literal["lrn"] = "lrn"
    size: PositiveInt = Field(5, description="number of neighbouring channels summed")
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0
    positional: ClassVar = ("size",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        # x / (k + alpha·sum)^beta: with k ~ 0 an all-zero neighbourhood (common after relu)
        # divides by 0; a negative alpha makes the base negative (NaN for a fractional beta).
        if not (self.k >= EPSILON and math.isfinite(self.k)):
            raise ShapeError(
                f"lrn's k must be at least {EPSILON:g}: x is divided by (k + alpha·sum)^beta, "
                f"0 where the neighbourhood is all zeros, received k={self.k:g}",
                "use k=2 (AlexNet) or k=1",
            )
        if not (self.alpha >= 0 and math.isfinite(self.alpha)):
            raise ShapeError(
                f"lrn's alpha must be 0 or more, received alpha={self.alpha:g}",
                "use alpha=1e-4 (AlexNet)",
            )
        return spatial_input(inputs, "lrn")


class ActivationSpec(LayerSpec):
    """An activation function as its own layer."""

    kind: Literal["act"] = "act"
    fn: Activation
    positional: ClassVar = ("fn",)


class RescaleSpec(LayerSpec):
    """x * scale + offset (e.g. scale=1/255 maps pixels to [0, 1]).

    ``scale`` and ``offset`` are one number (every channel) or one per channel, as Keras'
    Rescaling takes them: EfficientNet's ImageNet stem divides each channel by its own
    sqrt(std) after its Normalization.
    """

    kind: Literal["rescale"] = "rescale"
    scale: float | list[float] = Field(description="factor (one number: all channels)")
    offset: float | list[float] = Field(0.0, description="added after (one number: all)")
    positional: ClassVar = ("scale", "offset")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        channels = inputs[0][-1]
        for key in ("scale", "offset"):
            value = getattr(self, key)
            if isinstance(value, list) and len(value) not in (1, channels):
                raise ShapeError(
                    f"rescale needs one {key} per channel ({channels}), "
                    f"received {len(value)} values",
                    f"give {channels} values or one number for all channels",
                )
        return inputs[0]


class NormalizeSpec(LayerSpec):
    """Fixed per-channel normalisation (x - mean) / sqrt(variance): Keras' Normalization layer.

    ``mean`` and ``variance`` are one number (every channel) or one per channel. Keras keeps
    them (and a sample count) as non-trainable weights: 2C + 1 parameters (EfficientNet), or
    with ``constants: true`` in the layer's configuration: no parameters (ConvNeXt's stem).
    """

    kind: Literal["normalize"] = "normalize"
    mean: float | list[float] = Field(0.0, description="per-channel mean (one number: all)")
    variance: float | list[float] = Field(1.0, description="per-channel variance (> 0)")
    constants: bool = Field(
        False,
        description="keep mean/variance as constants, not weights (0 parameters, as ConvNeXt)",
    )
    always_shown: ClassVar = ("mean", "variance")

    @field_validator("variance")
    @classmethod
    def _positive(cls, v: Any) -> Any:
        if any(x <= 0 for x in (v if isinstance(v, list) else [v])):
            raise ValueError(f"variances must be positive, received {v!r}")
        return v

    def per_channel(self, channels: int) -> tuple[list[float], list[float]]:
        """Mean and variance, one value per channel."""
        out = []
        for key in ("mean", "variance"):
            value = getattr(self, key)
            values = value if isinstance(value, list) else [value]
            if len(values) == 1:
                values = values * channels
            if len(values) != channels:
                raise ShapeError(
                    f"normalize needs one {key} per channel ({channels}), received {len(values)} values",
                    f"give {channels} values or one for all channels",
                )
            out.append([float(x) for x in values])
        return out[0], out[1]

    def output_shape(self, inputs: list[Shape]) -> Shape:
        mean, variance = self.per_channel(inputs[0][-1])
        # Keras divides by max(sqrt(variance), epsilon): a smaller variance is silently
        # replaced (and below ~1e-45 it is 0 in float32): the channel would not be what is written.
        tiny = [v for v in variance if not v >= EPSILON**2]
        if tiny or not all(math.isfinite(x) for x in mean + variance):
            raise ShapeError(
                "normalize divides by sqrt(variance), which must be at least "
                f"{EPSILON:g} (Keras' epsilon) and finite, received variance={self.variance!r}"
                + ("" if tiny else f", mean={self.mean!r}"),
                f"use variances of at least {EPSILON**2:g}; a channel that constant carries no "
                "information (variance: 1 leaves it as it is)",
            )
        return inputs[0]

    def params(self, inputs: list[Shape]) -> int:
        return 0 if self.constants else 2 * inputs[0][-1] + 1

    def non_trainable(self, inputs: list[Shape]) -> int:
        return self.params(inputs)


class MergeSpec(LayerSpec):
    """A kind that merges two or more inputs (add, multiply, concat)."""

    is_merge: ClassVar[bool] = True


class AddSpec(MergeSpec):
    """Element-wise sum of two or more inputs (residual connections)."""

    kind: Literal["add"] = "add"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return shapes.broadcast(inputs, "add")


class MultiplySpec(MergeSpec):
    """Element-wise product (squeeze-and-excitation gating); 1-sized dims broadcast."""

    kind: Literal["multiply"] = "multiply"

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return shapes.broadcast(inputs, "multiply")


class ConcatSpec(MergeSpec):
    """Concatenation along an axis (channels by default: inception, DenseNet).

    Axes are numbered as Keras numbers them: 1 is the first axis after the batch, -1 the
    channels. The batch axis (0) cannot be concatenated.
    """

    kind: Literal["concat"] = "concat"
    axis: int = Field(-1, description="1 = first axis after the batch, -1 = channels")
    positional: ClassVar = ("axis",)
    always_shown: ClassVar = ()  # axis -1 (the channels, the usual case) goes unsaid

    @field_validator("axis")
    @classmethod
    def _not_batch(cls, v: int) -> int:
        if v == 0:
            raise ValueError(
                "concat cannot join along the batch axis, received axis=0 "
                "(1 is the first axis after the batch, -1 the channels)"
            )
        return v

    def output_shape(self, inputs: list[Shape]) -> Shape:
        rank = len(inputs[0])
        if self.axis > rank:
            raise ShapeError(
                f"concat axis is out of range for a {fmt(inputs[0])} input, received axis={self.axis}",
                f"use 1..{rank} (1 is the first axis after the batch) or -1 for the channels",
            )
        # Shapes here exclude the batch: Keras' axis k is shape axis k - 1.
        ax = self.axis - 1 if self.axis > 0 else self.axis
        try:
            return shapes.concat(inputs, ax)
        except ShapeError as exc:  # name the axis as the user wrote it
            msg = exc.message.replace(f"along axis {ax} ", f"along axis {self.axis} ", 1)
            raise ShapeError(msg, exc.hint) from None


#: Every primitive kind, in the order of the README reference.
PRIMITIVES: tuple[type[LayerSpec], ...] = (
    ConvSpec,
    DepthwiseConvSpec,
    SeparableConvSpec,
    ConvTransposeSpec,
    MaxPoolSpec,
    AvgPoolSpec,
    L2PoolSpec,
    GlobalMaxPoolSpec,
    GlobalAvgPoolSpec,
    GlobalL2PoolSpec,
    DenseSpec,
    FlattenSpec,
    DropoutSpec,
    DropPathSpec,
    BatchNormSpec,
    LayerNormSpec,
    LayerScaleSpec,
    LRNSpec,
    ActivationSpec,
    ZeroPadSpec,
    CropSpec,
    UpsampleSpec,
    ResizeSpec,
    RescaleSpec,
    NormalizeSpec,
    ReshapeSpec,
    PermuteSpec,
    ShuffleSpec,
    AddSpec,
    MultiplySpec,
    ConcatSpec,
)


def kind_of(cls: type[LayerSpec]) -> str:
    """The ``kind`` tag of a layer class."""
    return cls.model_fields["kind"].default
