"""Sliding-window layer kinds: convolutions (conv, dwconv, sepconv, convT) and pooling.

Listed in :data:`cnnspec.spec.layers.PRIMITIVES` with every other kind.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, PlainValidator, PositiveInt, WithJsonSchema

from .. import shapes
from ..shapes import Shape, ShapeError, fmt, prod
from .layer_base import LayerSpec, check_dilation, spatial_input
from .types import Activation, Padding, Sizes, sizes_parser

#: Sizes that may be 0 (a transposed convolution's output padding).
Offsets = Annotated[
    tuple[int, ...],
    PlainValidator(sizes_parser(0)),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(x\d+)*$"},
                {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            ]
        }
    ),
]


class WindowSpec(LayerSpec):
    """Sliding-window layers: K, s, p, d."""

    K: Sizes = Field(description="filter size K (K×K), or per direction e.g. 1x7")
    s: Sizes = Field((1,), description="stride, or per direction e.g. 2x1")
    p: Padding = Field((0,), description="padding: zeros per side, same or valid")
    d: Sizes = Field((1,), description="dilation")

    def _out_spatial(self, shape: Shape) -> Shape:
        check_dilation(self.s, self.d)
        return shapes.window_out(shape[:-1], self.K, self.s, self.d, self.p, self.kind_name)

    def _kprod(self, shape: Shape) -> int:
        return prod(shapes.expand(self.K, len(shape) - 1, "K"))


class ConvSpec(WindowSpec):
    """Convolution (1D/2D/3D from the input rank): K×K filters, n_K of them."""

    kind: Literal["conv"] = "conv"
    n_K: PositiveInt = Field(description="number of kernels (output channels)")
    groups: PositiveInt = Field(1, description="grouped convolution (AlexNet uses 2)")
    act: Activation | None = Field(None, description="activation applied after the convolution")
    bias: bool = True
    positional: ClassVar = ("K", "n_K")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "conv")
        c_in = shape[-1]
        if c_in % self.groups or self.n_K % self.groups:
            raise ShapeError(
                f"groups={self.groups} must divide the input channels ({c_in}) and n_K ({self.n_K})",
                "choose groups that divides both",
            )
        return (*self._out_spatial(shape), self.n_K)

    def params(self, inputs: list[Shape]) -> int:
        c_in = inputs[0][-1]
        return self._kprod(inputs[0]) * (c_in // self.groups) * self.n_K + (
            self.n_K if self.bias else 0
        )

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        c_in = inputs[0][-1]
        return prod(output[:-1]) * self._kprod(inputs[0]) * (c_in // self.groups) * self.n_K


class DepthwiseConvSpec(WindowSpec):
    """Depthwise convolution: one K×K filter per input channel (times ``multiplier``)."""

    kind: Literal["dwconv"] = "dwconv"
    multiplier: PositiveInt = 1
    act: Activation | None = None
    bias: bool = True
    positional: ClassVar = ("K",)

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "dwconv", (2, 3))
        return (*self._out_spatial(shape), shape[-1] * self.multiplier)

    def params(self, inputs: list[Shape]) -> int:
        c = inputs[0][-1] * self.multiplier
        return self._kprod(inputs[0]) * c + (c if self.bias else 0)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return prod(output[:-1]) * self._kprod(inputs[0]) * output[-1]


class SeparableConvSpec(WindowSpec):
    """Depthwise-separable convolution: depthwise K×K, then a pointwise 1×1 to n_K channels."""

    kind: Literal["sepconv"] = "sepconv"
    n_K: PositiveInt
    multiplier: PositiveInt = 1
    act: Activation | None = None
    bias: bool = True
    positional: ClassVar = ("K", "n_K")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "sepconv", (2, 3))
        return (*self._out_spatial(shape), self.n_K)

    def params(self, inputs: list[Shape]) -> int:
        mid = inputs[0][-1] * self.multiplier
        return self._kprod(inputs[0]) * mid + mid * self.n_K + (self.n_K if self.bias else 0)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        mid = inputs[0][-1] * self.multiplier
        return prod(output[:-1]) * (self._kprod(inputs[0]) * mid + mid * self.n_K)


class ConvTransposeSpec(WindowSpec):
    """Transposed convolution (1D/2D/3D): upsampling by s with learned K×K filters.

    Output size per direction: (n - 1)·s - 2p + d(K - 1) + 1 + op, where explicit p crops the
    output (PyTorch's ConvTranspose rule). ``p=same`` gives n·s and ``p=valid`` Keras' rule
    (op then defaults to max(K, s) - K).
    """

    kind: Literal["convT"] = "convT"
    n_K: PositiveInt = Field(description="number of kernels (output channels)")
    op: Offsets | None = Field(None, description="output padding: extra size at the end (< s)")
    act: Activation | None = None
    bias: bool = True
    positional: ClassVar = ("K", "n_K")

    def output_padding(self, rank: int) -> tuple[int, ...] | None:
        """Per-direction output padding as Keras takes it (None: Keras' default)."""
        s = shapes.expand(self.s, rank, "s")
        d = shapes.expand(self.d, rank, "d")
        if self.op is None:
            return None if isinstance(self.p, str) else (0,) * rank
        op = shapes.expand(self.op, rank, "op")
        if any(o >= si for o, si in zip(op, s, strict=True)):
            raise ShapeError(
                f"the output padding must be smaller than the stride, received op={fmt(op)}, s={fmt(s)}",
                "use op between 0 and s - 1",
            )
        if max(d) > 1 and max(op) > 0:
            raise ShapeError("op cannot be combined with a dilation above 1", "drop op or d")
        return op

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, "convT")
        rank = len(shape) - 1
        check_dilation(self.s, self.d, "upsample")
        K = shapes.expand(self.K, rank, "K")
        s = shapes.expand(self.s, rank, "s")
        d = shapes.expand(self.d, rank, "d")
        op = self.output_padding(rank)
        pads = shapes.pads_for(self.p, rank)
        out = []
        for i, n in enumerate(shape[:-1]):
            span = d[i] * (K[i] - 1) + 1
            if pads == "same":
                size = n * s[i] if op is None else (n - 1) * s[i] + span % 2 + op[i]
            else:
                extra = max(span, s[i]) - span if op is None else op[i]
                crop = 0 if pads == "valid" else sum(pads[i])
                size = (n - 1) * s[i] + span + extra - crop
                if size <= 0:  # explicit p crops a transposed conv's output: less p, not less K
                    raise ShapeError(
                        f"p={list(pads[i]) if pads[i][0] != pads[i][1] else pads[i][0]} crops "
                        f"away the whole output ({size + crop} wide before the crop) of a "
                        f"{fmt(shape)} input",
                        f"use a smaller p (at most {(size + crop - 1) // 2} a side)",
                    )
            out.append(size)
        return (*out, self.n_K)

    def params(self, inputs: list[Shape]) -> int:
        return self._kprod(inputs[0]) * inputs[0][-1] * self.n_K + (self.n_K if self.bias else 0)

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        # Every input position scatters a K×K×n_K filter per input channel.
        return prod(inputs[0]) * self._kprod(inputs[0]) * self.n_K


class PoolSpec(LayerSpec):
    """Pooling: K×K window; the stride defaults to K (2x2 pooling halves the size)."""

    K: Sizes = Field(description="window size")
    s: Sizes | None = Field(None, description="stride (default: K)")
    p: Padding = Field((0,), description="padding: zeros per side, same or valid")
    positional: ClassVar = ("K",)

    @property
    def strides(self) -> tuple[int, ...]:
        return self.s or self.K

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, self.kind_name)
        out = shapes.window_out(shape[:-1], self.K, self.strides, (1,), self.p, self.kind_name)
        return (*out, shape[-1])


class MaxPoolSpec(PoolSpec):
    """Max pooling: the maximum of each K×K neighbourhood."""

    kind: Literal["maxpool"] = "maxpool"


class AvgPoolSpec(PoolSpec):
    """Average pooling: the mean of each K×K neighbourhood."""

    kind: Literal["avgpool"] = "avgpool"


class L2PoolSpec(PoolSpec):
    """L2-norm pooling: sqrt of the sum of squares of each K×K neighbourhood."""

    kind: Literal["l2pool"] = "l2pool"


class GlobalPoolSpec(LayerSpec):
    keepdims: bool = Field(False, description="keep 1x1 spatial dimensions (for SE blocks)")

    def output_shape(self, inputs: list[Shape]) -> Shape:
        shape = spatial_input(inputs, self.kind_name)
        return (*([1] * (len(shape) - 1)), shape[-1]) if self.keepdims else (shape[-1],)


class GlobalMaxPoolSpec(GlobalPoolSpec):
    """Global max pooling over all spatial positions."""

    kind: Literal["gmaxpool"] = "gmaxpool"


class GlobalAvgPoolSpec(GlobalPoolSpec):
    """Global average pooling over all spatial positions."""

    kind: Literal["gavgpool"] = "gavgpool"


class GlobalL2PoolSpec(GlobalPoolSpec):
    """Global L2-norm pooling over all spatial positions."""

    kind: Literal["gl2pool"] = "gl2pool"
