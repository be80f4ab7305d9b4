"""Layer kinds that move values without weights: padding, cropping, resizing, reshaping,
permuting and shuffling channels. Listed in :data:`cnnspec.spec.layers.PRIMITIVES`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from .. import shapes
from ..shapes import Shape, ShapeError, fmt, prod
from .layer_base import LayerSpec, spatial_input
from .types import NAME_RE, Padding, Sizes


class ZeroPadSpec(LayerSpec):
    """Zero padding: p zeros on each side (or per direction, or [before, after] pairs)."""

    kind: Literal["zeropad"] = "zeropad"
    p: Padding
    positional: ClassVar = ("p",)

    @field_validator("p")
    @classmethod
    def _explicit(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError(f"zeropad needs explicit sizes, received {v!r}")
        return v

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "zeropad")
        pads = shapes.pads_for(self.p, len(shape) - 1)
        return (*(n + a + b for n, (a, b) in zip(shape[:-1], pads, strict=True)), shape[-1])


class CropSpec(LayerSpec):
    """Crop rows/columns from each side (NASNet)."""

    kind: Literal["crop"] = "crop"
    p: Padding = Field(description="how much to crop: per side, per direction or pairs")
    positional: ClassVar = ("p",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "crop")
        if isinstance(self.p, str):
            raise ShapeError(f"crop needs explicit sizes, received {self.p!r}")
        pads = shapes.pads_for(self.p, len(shape) - 1)
        out = tuple(n - a - b for n, (a, b) in zip(shape[:-1], pads, strict=True))
        if min(out) <= 0:
            raise ShapeError(f"crop removes the whole {fmt(shape)} input, received p={self.p}")
        return (*out, shape[-1])


#: How resize and upsample compute new pixels (Keras' names).
Interpolation = Literal["nearest", "bilinear", "bicubic"]


def _check_interpolation(kind: str, interpolation: str, shape: Shape) -> None:
    if interpolation != "nearest" and len(shape) != 3:
        raise ShapeError(
            f"{kind} interpolates ({interpolation}) images only (H x W x C), received {fmt(shape)}",
            "use interpolation: nearest on 1D and 3D inputs",
        )


class UpsampleSpec(LayerSpec):
    """Upsampling by an integer factor: nearest neighbour, or bilinear/bicubic on images."""

    kind: Literal["upsample"] = "upsample"
    size: Sizes = (2,)
    interpolation: Interpolation = Field(
        "nearest", description="nearest (any rank), bilinear or bicubic (images)"
    )
    positional: ClassVar = ("size", "interpolation")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "upsample")
        _check_interpolation("upsample", self.interpolation, shape)
        f = shapes.expand(self.size, len(shape) - 1, "size")
        return (*(n * k for n, k in zip(shape[:-1], f, strict=True)), shape[-1])


class ResizeSpec(LayerSpec):
    """Resize images to ``size`` (H x W), or to the height and width of an earlier layer
    (``like: name``): DeepLab's decoder brings its features back to the encoder's size."""

    kind: Literal["resize"] = "resize"
    size: Sizes | None = Field(None, description="the new height and width: 56x56")
    like: str | None = Field(
        None, pattern=NAME_RE, description="an earlier layer whose height and width to take"
    )
    interpolation: Interpolation = "bilinear"
    positional: ClassVar = ("size", "interpolation")

    @model_validator(mode="after")
    def _one_target(self) -> ResizeSpec:
        if (self.size is None) == (self.like is None):
            raise ValueError(
                "resize takes either size (56x56) or like (a layer name), received "
                + ("both" if self.size else "neither")
            )
        return self

    def with_shapes(self, shape_of: Callable[[str], Shape]) -> ResizeSpec:
        if self.like is None:
            return self
        target = shape_of(self.like)
        if len(target) != 3:
            raise ShapeError(
                f"resize takes the height and width of an image-shaped layer, received "
                f"like={self.like} of shape {fmt(target)}",
                "name a layer with an H x W x C output",
            )
        return self.model_copy(update={"size": target[:-1]})

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "resize", (3,))
        return (*shapes.expand(self.size or (), 2, "size"), shape[-1])


class ReshapeSpec(LayerSpec):
    """Reshape to ``shape`` (without the batch axis; one -1 is inferred)."""

    kind: Literal["reshape"] = "reshape"
    shape: tuple[int, ...]
    positional: ClassVar = ("shape",)

    @field_validator("shape", mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [int(x) for x in v.replace("x", ",").split(",") if x.strip()]
        return [v] if isinstance(v, int) else v

    def output_shape(self, inputs: list[Shape]) -> Shape:
        total = prod(inputs[0])
        known = prod([d for d in self.shape if d != -1])
        if self.shape.count(-1) > 1 or any(d == 0 or d < -1 for d in self.shape):
            raise ShapeError(
                f"reshape takes positive sizes and at most one -1, received {list(self.shape)}"
            )
        if -1 in self.shape:
            if total % known:
                raise ShapeError(f"cannot reshape {fmt(inputs[0])} into {list(self.shape)}")
            return tuple(total // known if d == -1 else d for d in self.shape)
        if known != total:
            raise ShapeError(
                f"reshape must keep {total} values, received shape {list(self.shape)} ({known} values) "
                f"for an input of {fmt(inputs[0])}",
                "use -1 for one dimension to infer it",
            )
        return self.shape


class PermuteSpec(LayerSpec):
    """Reorder the axes (batch excluded, numbered from 1 as Keras): ``[2, 1, 3]`` swaps H and W."""

    kind: Literal["permute"] = "permute"
    dims: tuple[PositiveInt, ...] = Field(description="the new order of the axes 1..rank")
    positional: ClassVar = ("dims",)

    def notation(self, rank: int = 1) -> str:
        return str(list(self.dims))  # an order, not sizes: [2, 1, 3], not 2x1x3

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        if sorted(self.dims) != list(range(1, len(shape) + 1)):
            raise ShapeError(
                f"permute needs an order of the axes 1..{len(shape)} of its {fmt(shape)} input, "
                f"received {list(self.dims)}",
                f"list each of 1..{len(shape)} once (the batch axis is not counted)",
            )
        return tuple(shape[d - 1] for d in self.dims)


class ShuffleSpec(LayerSpec):
    """Channel shuffle with g groups (ShuffleNet): channels (g, C/g) are read as (C/g, g)."""

    kind: Literal["shuffle"] = "shuffle"
    groups: PositiveInt = Field(description="number of groups g (divides the channels)")
    positional: ClassVar = ("groups",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = inputs[0]
        if shape[-1] % self.groups:
            raise ShapeError(
                f"shuffle needs the channels ({shape[-1]}) to be a multiple of its groups, "
                f"received groups={self.groups}",
                "use the groups of the grouped conv before it",
            )
        return shape
