"""The whole spec: input, reusable blocks, layers, auxiliary heads and the training recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt, PrivateAttr

from .backbone import BackboneSpec
from .base import StrictModel
from .blocks import LayerItem
from .train import TrainSpec
from .types import NAME_RE

if TYPE_CHECKING:
    from .graph import Graph

Scalar = int | float | str | bool | None


class HeadSpec(StrictModel):
    """An auxiliary classifier fed from an inner layer (GoogLeNet); dropped at inference."""

    from_: str = Field(alias="from", description="the inner layer it reads")
    loss_weight: float = Field(
        0.3, ge=0, description="weight of its loss in training (GoogLeNet: 0.3)"
    )
    layers: list[LayerItem] = Field(min_length=1)


class DefineSpec(StrictModel):
    """A named, parameterised block: ``$n`` / ``${n*4}`` in its layers take the values given at use."""

    params: dict[str, Scalar] = Field(
        default_factory=dict, description="parameter defaults (null: required)"
    )
    layers: list[Any] = Field(
        min_length=1, description="the block's layers, with $param placeholders"
    )
    doc: str | None = None


class ModelSpec(StrictModel):
    """A CNN described in the K / n_K / s / p notation."""

    name: str = Field(pattern=NAME_RE)
    input: tuple[PositiveInt, ...] = Field(
        min_length=1,
        max_length=4,
        description="[H, W, C]; [L, C] for 1D; [D, H, W, C] for 3D; [N] for vectors",
    )
    preprocess: Literal["unit", "symmetric", "none"] = Field(
        "unit",
        description="inside the model, raw pixels in [0, 255] are mapped to [0, 1] (unit), "
        "[-1, 1] (symmetric) or left as they are (none)",
    )
    description: str | None = None
    define: dict[str, DefineSpec] = Field(default_factory=dict)
    backbone: BackboneSpec | None = Field(
        None, description="a pretrained network under the layers (transfer learning)"
    )
    layers: list[LayerItem] = Field(min_length=1)
    heads: dict[str, HeadSpec] = Field(default_factory=dict)
    train: TrainSpec = Field(default_factory=TrainSpec)

    _graph: Graph | None = PrivateAttr(None)
    _source: dict = PrivateAttr(default_factory=dict)
    _file: str = PrivateAttr("<spec>")

    # --- derived --------------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        """The expanded layer graph with every shape, parameter count and MAC count."""
        if self._graph is None:
            from .graph import compile_graph

            self._graph = compile_graph(self)
        return self._graph

    @property
    def source_data(self) -> dict:
        """The spec as plain YAML data (after ``--set`` overrides), for the run directory."""
        return self._source

    @property
    def file(self) -> str:
        return self._file

    @property
    def output_name(self) -> str:
        return self.graph.output

    @property
    def num_classes(self) -> int | None:
        """Units of the final layer when it is a classifier (dense), else None."""
        return self.graph.num_classes(self.graph.output)

    def loss_weights(self) -> dict[str, float]:
        weights = {self.output_name: 1.0}
        weights.update({name: head.loss_weight for name, head in self.heads.items()})
        return weights
