"""The whole spec: input, reusable blocks, layers, auxiliary heads and the training recipe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .backbone import BackboneSpec
from .base import StrictModel
from .blocks import LayerItem
from .init import InitSpec
from .scales import ParamValue, ScaleSpec
from .search import SearchSpec
from .train import LossSpec, TrainSpec
from .types import NAME_RE

if TYPE_CHECKING:
    from .graph import Graph

Scalar = int | float | str | bool | None


def _known_task(value: str | None) -> str | None:
    from ..errors import did_you_mean
    from ..tasks.registry import accepted, names

    if value is not None and value not in names():
        near = did_you_mean(value, names())
        raise ValueError(
            f"unknown task '{value}'; use {accepted()}" + (f" ({near})" if near else "")
        )
    return value


class HeadSpec(StrictModel):
    """A second output fed from an inner layer.

    Without ``task:`` an auxiliary classifier of the main task (GoogLeNet), trained with the
    main loss and dropped at inference. With ``task:`` an output of its own (a count beside a
    class), with its own loss and label column(s), kept in the exported model.
    """

    from_: str = Field(alias="from", description="the inner layer it reads")
    loss_weight: float = Field(
        0.3, ge=0, description="weight of its loss in training (GoogLeNet: 0.3)"
    )
    layers: list[LayerItem] = Field(min_length=1)
    task: str | None = Field(
        None, description="its task (a head of its own); none: an auxiliary head of the main task"
    )
    loss: LossSpec | None = Field(None, description="its loss (default: its task's)")
    label: list[str] | None = Field(
        None,
        min_length=1,
        description="the data's label column(s) it learns, e.g. count",
        # one column may be written alone (label: count): the schema says so too
        json_schema_extra={
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "null"},
            ]
        },
    )
    metrics: list[str] | None = Field(None, description="its metrics (default: its task's)")

    @field_validator("label", mode="before")
    @classmethod
    def _one_label(cls, value):
        return [value] if isinstance(value, str) else value

    @field_validator("task")
    @classmethod
    def _task(cls, value: str | None) -> str | None:
        return _known_task(value)

    @property
    def own(self) -> bool:
        """A head with a task of its own (kept at inference), not an auxiliary classifier."""
        return self.task is not None


class DefineSpec(StrictModel):
    """A named, parameterised block: ``$n`` / ``${n*4}`` in its layers take the values given at use."""

    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="parameter defaults (null: required)"
    )
    channels: list[str] = Field(
        default_factory=list,
        description="parameters that are channel counts: a scale's width multiplies them",
    )
    layers: list[Any] = Field(
        min_length=1, description="the block's layers, with $param placeholders"
    )
    doc: str | None = None

    @field_validator("channels")
    @classmethod
    def _channels_are_params(cls, v: list[str], info: ValidationInfo) -> list[str]:
        params = info.data.get("params") or {}
        unknown = [c for c in v if c not in params]
        if unknown:
            raise ValueError(
                f"channels names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'}"
                f" not in params ({', '.join(params) or 'none'})"
            )
        return v


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
    task: str = Field(
        "classification",
        description="what the main output learns: classification (one class per example), "
        "multilabel (a set of labels), regression (numbers); see cnnspec.tasks",
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="values of $name in any item (a scale may change them)"
    )
    define: dict[str, DefineSpec] = Field(default_factory=dict)
    scales: dict[str, ScaleSpec] = Field(
        default_factory=dict,
        description="a model family: named width/depth/resolution settings (--scale NAME)",
    )
    scale: str | None = Field(None, description="the scales: entry applied (--scale overrides)")
    backbone: BackboneSpec | None = Field(
        None, description="a pretrained network under the layers (transfer learning)"
    )
    init: InitSpec | None = Field(
        None,
        description="pretrained weights loaded into this spec's layers (by name, then structure)",
    )
    layers: list[LayerItem] = Field(min_length=1)
    heads: dict[str, HeadSpec] = Field(default_factory=dict)
    train: TrainSpec = Field(default_factory=TrainSpec)
    search: SearchSpec | None = Field(
        None, description="what `cnnspec search` varies, and within which budget"
    )

    @field_validator("task")
    @classmethod
    def _task(cls, value: str) -> str:
        return _known_task(value) or "classification"

    @model_validator(mode="after")
    def _task_defaults(self) -> ModelSpec:
        # A recipe that names no loss / metrics gets its task's (classification: as before).
        from ..tasks.registry import get

        task = get(self.task)
        given = self.train.model_fields_set
        if "loss" not in given and self.train.loss.kind != task.default_loss:
            self.train.loss = LossSpec.model_validate(task.default_loss)
        if "metrics" not in given and list(self.train.metrics) != list(task.default_metrics):
            self.train.metrics = list(task.default_metrics)
        for head in self.heads.values():
            if head.own:
                head_task = get(head.task)
                if head.loss is None:
                    head.loss = LossSpec.model_validate(head_task.default_loss)
                if head.metrics is None:
                    head.metrics = list(head_task.default_metrics)
        return self

    _graph: Graph | None = PrivateAttr(None)
    _source: dict = PrivateAttr(default_factory=dict)
    _file: str = PrivateAttr("<spec>")
    _scaling: dict | None = PrivateAttr(None)

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
    def scaling(self) -> dict | None:
        """The scale applied (settings and every channel count its rounding changed), or None."""
        return self._scaling

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

    @property
    def task_heads(self) -> dict[str, HeadSpec]:
        """The heads with a task of their own (outputs kept at inference)."""
        return {name: head for name, head in self.heads.items() if head.own}
