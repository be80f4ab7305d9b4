"""Blocks: sub-graphs written as one item (residual, inception, parallel, user-defined).

Blocks are macros: :mod:`cnnspec.spec.graph` expands each into primitive layers with
predictable names (``<block>_<layer>``); the block's own name refers to its output.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, NonNegativeInt, PositiveInt

from .layers import PRIMITIVES, LayerSpec
from .types import Activation


class ResidualSpec(LayerSpec):
    """out = act(body(x) + shortcut(x)). ``auto`` projects with a 1×1 conv when shapes differ."""

    kind: Literal["residual"] = "residual"
    body: list[LayerItem] = Field(min_length=1)
    shortcut: Literal["auto", "identity", "projection"] | list[LayerItem] = "auto"
    act: Activation | None = Field("relu", description="activation after the addition")
    shortcut_bn: bool | None = Field(
        None, description="batch norm after a projection (default: when the body has one)"
    )
    shortcut_bias: bool | None = Field(
        None, description="bias in the projection conv (default: as the body's last conv)"
    )
    drop_path: float = Field(
        0.0, ge=0.0, lt=1.0, description="stochastic depth: drop the body per sample (training)"
    )


class InceptionSpec(LayerSpec):
    """A GoogLeNet inception module, in the columns of the paper's Table 1."""

    kind: Literal["inception"] = "inception"
    n1x1: NonNegativeInt = Field(description="#1x1 (0: no 1x1 branch)")
    n3x3red: NonNegativeInt = Field(description="#3x3 reduce (0: no reduction)")
    n3x3: PositiveInt = Field(description="#3x3")
    n5x5red: NonNegativeInt = Field(description="#5x5 reduce (0: no reduction)")
    n5x5: PositiveInt = Field(description="#5x5")
    pool_proj: NonNegativeInt = Field(description="pool proj (0: pool without projection)")
    act: Activation | None = "relu"
    bn: bool = Field(False, description="batch norm after each conv (Inception v2 style)")
    positional: ClassVar = ("n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj")


class ParallelSpec(LayerSpec):
    """Branches that all take the block's input, merged by add, concat or multiply."""

    kind: Literal["parallel"] = "parallel"
    branches: list[list[LayerItem]] = Field(
        min_length=2, description="each branch is a list of layers ([] is the identity)"
    )
    merge: Literal["add", "concat", "multiply"] = "concat"
    act: Activation | None = None


class BlockSpec(LayerSpec):
    """A sequence of layers under one name (what a ``define:`` block expands to)."""

    kind: Literal["block"] = "block"
    body: list[LayerItem] = Field(min_length=1)
    block: str | None = Field(None, description="the define: name it came from")


BLOCKS: tuple[type[LayerSpec], ...] = (ResidualSpec, InceptionSpec, ParallelSpec, BlockSpec)

LayerItem = Annotated[
    Union[tuple(PRIMITIVES + BLOCKS)],  # noqa: UP007 - a runtime-built union
    Field(discriminator="kind"),
]

for _cls in BLOCKS:
    _cls.model_rebuild()
