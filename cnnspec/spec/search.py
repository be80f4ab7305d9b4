"""The ``search:`` section: what ``cnnspec search`` varies, for how long, and within which budget.

Pure Pydantic (no TensorFlow, no Optuna)::

    search:
      trials: 40
      objective: val_accuracy            # any name the recipe logs; max/min inferred
      budget: {max_params: 2.0e6, max_macs: 3.0e8, max_memory_mb: 4000}
      space:                             # keys are --set paths
        train.optimizer.adam.lr: {loguniform: [1.0e-4, 1.0e-2]}
        train.batch_size: [32, 64, 128]
        layers.3.basic.n: {int: [16, 64], step: 16}
        layers.0.conv: ["3x3, 32, relu", "5x5, 32, relu"]
      pruner: median

Each trial's values are applied exactly as ``--set path=value`` (see :func:`override_text`).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    model_validator,
)

from .base import StrictModel

#: Most trials one search may plan (a bound on what a user controls).
MAX_TRIALS = 100_000
#: Most searched paths and choices per path.
MAX_DIMENSIONS = 64
MAX_CHOICES = 1_000


def _choice(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(
        f"a choice is one number, string, boolean or null (as --set takes it), received {value!r}"
    )


#: One value of a list of choices: a scalar, as ``--set`` takes it.
Choice = Annotated[
    Any,
    PlainValidator(_choice),
    WithJsonSchema({"type": ["number", "string", "boolean", "null"]}),
]


class LogUniformSpec(StrictModel):
    """A float drawn log-uniformly between two positive bounds (learning rates)."""

    loguniform: tuple[float, float] = Field(description="[low, high], both > 0")

    @model_validator(mode="after")
    def _bounds(self) -> LogUniformSpec:
        lo, hi = self.loguniform
        if not (0 < lo < hi) or not math.isfinite(hi):
            raise ValueError(f"loguniform needs 0 < low < high, received [{lo}, {hi}]")
        return self


class UniformSpec(StrictModel):
    """A float drawn uniformly between two bounds (optionally on a grid of ``step``)."""

    uniform: tuple[float, float] = Field(description="[low, high]")
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> UniformSpec:
        lo, hi = self.uniform
        if not (lo < hi) or not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"uniform needs low < high, received [{lo}, {hi}]")
        return self


class IntSpec(StrictModel):
    """An integer between two bounds (inclusive), on a grid of ``step`` or log-scaled."""

    int_: tuple[int, int] = Field(alias="int", description="[low, high], inclusive")
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> IntSpec:
        lo, hi = self.int_
        if not lo < hi:
            raise ValueError(f"int needs low < high, received [{lo}, {hi}]")
        if self.log and (lo < 1 or self.step != 1):
            raise ValueError("log: true needs low >= 1 and step 1")
        if (hi - lo) % self.step:
            raise ValueError(
                f"high - low must be a multiple of step, received [{lo}, {hi}], step {self.step}"
            )
        return self


_KINDS = ("loguniform", "uniform", "int")


def _dimension_kind(value: Any) -> str | None:
    """The tag of a dimension: a YAML list is a set of choices, a mapping names its kind."""
    if isinstance(value, list):
        return "choices"
    if isinstance(value, dict):
        return next((k for k in _KINDS if k in value), None)
    tags = {LogUniformSpec: "loguniform", UniformSpec: "uniform", IntSpec: "int"}
    return tags.get(type(value))


Dimension = Annotated[
    Annotated[list[Choice], Tag("choices")]
    | Annotated[LogUniformSpec, Tag("loguniform")]
    | Annotated[UniformSpec, Tag("uniform")]
    | Annotated[IntSpec, Tag("int")],
    Discriminator(
        _dimension_kind,
        custom_error_type="dimension",
        custom_error_message="a search dimension is a list of choices or a mapping with "
        "loguniform: [a, b], uniform: [a, b] or int: [a, b]",
    ),
]


class BudgetSpec(StrictModel):
    """Limits checked from the pure shape inference, before anything is built."""

    max_params: float | None = Field(None, gt=0, description="most parameters")
    max_macs: float | None = Field(None, gt=0, description="most multiply-accumulates per sample")
    max_memory_mb: float | None = Field(
        None, gt=0, description="most training memory (MB) by the summary's --batch estimate"
    )


class SearchSpec(StrictModel):
    """Architecture and recipe search (``cnnspec search``)."""

    trials: int = Field(20, ge=1, le=MAX_TRIALS, description="trials to run in all")
    objective: str = Field(
        "val_accuracy",
        min_length=1,
        description="a name the recipe logs (val_loss, val_top3, val_map, val_mae, val_count_mae)",
    )
    direction: Literal["auto", "maximize", "minimize"] = Field(
        "auto",
        description="auto: as the objective's task says (minimize losses, mae, rmse; maximize the rest)",
    )
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    space: dict[str, Dimension] = Field(
        min_length=1,
        max_length=MAX_DIMENSIONS,
        description="--set paths and what to try: [choices], {loguniform: [a, b]}, "
        "{uniform: [a, b]}, {int: [a, b], step: n}",
    )
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stop weak trials early from their per-epoch curves"
    )
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _space(self) -> SearchSpec:
        for path, dim in self.space.items():
            parts = path.split(".")
            if not path or "" in parts or "=" in path:
                raise ValueError(
                    f"space keys are --set paths like train.batch_size, received {path!r}"
                )
            if parts[0] == "search":
                raise ValueError(f"a search cannot vary its own settings, received {path!r}")
            if isinstance(dim, list) and not 1 <= len(dim) <= MAX_CHOICES:
                raise ValueError(f"{path} needs 1 to {MAX_CHOICES} choices, received {len(dim)}")
        return self

    _objective_mode: str | None = PrivateAttr(None)

    def set_objective_mode(self, mode: str | None) -> None:
        """min or max for the objective, from its output's task (``spec.monitors``)."""
        self._objective_mode = mode

    @property
    def maximize(self) -> bool:
        if self.direction != "auto":
            return self.direction == "maximize"
        if self._objective_mode is not None:
            return self._objective_mode == "max"
        return not self.objective.endswith("loss")


def override_text(path: str, value: Choice) -> str:
    """The ``--set`` text that applies ``value`` at ``path`` (a string stays a string)."""
    if isinstance(value, str):
        return f"{path}={json.dumps(value)}"  # a JSON string is a quoted YAML scalar
    if isinstance(value, bool) or value is None:
        return f"{path}={json.dumps(value)}"
    return f"{path}={value!r}"
