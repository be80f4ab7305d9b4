"""Model families from one spec: ``scales:`` and ``--scale NAME`` (EfficientNet B0-B7, MobileNet α).

A scale names a width multiplier, a depth multiplier, an input size and a channel divisor.
Applying it (before the layers are expanded):

- ``width`` multiplies every channel count *written as a number*: the fields of
  :data:`CHANNEL_FIELDS` (a conv-family ``n_K``, the inception columns) and the ``define:``
  parameters listed in that define's ``channels:``. The result is rounded to a multiple of ``divisor``, never more than 10 % down
  (Keras' ``round_filters`` / ``_make_divisible``). Values computed by ``${...}`` are not
  rounded again: they are computed from the scaled numbers, as Keras computes them.
- ``depth`` multiplies every ``times:`` written as a number, rounded up.
- ``resolution`` replaces the spatial size of ``input``.
- ``dense`` units never scale (a classifier's class count stays), and an item with
  ``fixed: true`` opts out with everything inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, PositiveInt, ValidationError

from ..errors import Location, Problem, SpecError, did_you_mean
from .base import StrictModel
from .types import Sizes

#: A parameter's value: a scalar, or a list such as a padding ``[[0, 1], [0, 1]]``.
ParamValue = int | float | str | bool | list[Any] | None


#: Fields that are channel counts, in any kind that has them: a scale's width multiplies them
#: (conv-family ``n_K``, the inception columns). ``dense`` units are not among them.
CHANNEL_FIELDS = ("n_K", "n1x1", "n3x3red", "n3x3", "n5x5red", "n5x5", "pool_proj")


class ScaleSpec(StrictModel):
    """One member of a model family: width, depth, input size and channel divisor."""

    width: float = Field(1.0, gt=0, le=16, description="multiplies channel counts (n_K)")
    depth: float = Field(1.0, gt=0, le=16, description="multiplies times: (rounded up)")
    resolution: Sizes | None = Field(
        None, description="input size: 240 (square) or 240x320; replaces input's spatial size"
    )
    divisor: PositiveInt = Field(8, description="channel counts round to a multiple of this")
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="values of the spec's params: for this scale ($name)"
    )
    doc: str | None = None


def round_channels(channels: int, width: float, divisor: int) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, never more than 10 % down."""
    exact = channels * width
    new = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if new < 0.9 * exact:
        new += divisor
    return int(new)


def round_repeats(times: int, depth: float) -> int:
    """``times * depth`` rounded up (Keras' ``round_repeats``)."""
    return int(math.ceil(depth * times))


@dataclass
class Scaling:
    """The scale applied while expanding, and the channel counts its rounding changed."""

    name: str
    spec: ScaleSpec
    #: (location, what) -> record of a written channel count that rounding changed.
    rounded: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def channels(self, value: int, location: Location, what: str) -> int:
        new = round_channels(value, self.spec.width, self.spec.divisor)
        exact = value * self.spec.width
        if new != exact:
            self.rounded.setdefault(
                (str(location), what),
                {
                    "location": str(location),
                    "layer": what,
                    "written": value,
                    "exact": round(exact, 4),
                    "channels": new,
                },
            )
        return new

    def times(self, value: int) -> int:
        return round_repeats(value, self.spec.depth)

    def report(self) -> dict[str, Any]:
        """For the summary: the scale's settings and every channel count rounding changed."""
        return {
            "name": self.name,
            **self.spec.model_dump(exclude_none=True),
            "rounded": list(self.rounded.values()),
        }


def apply_scale(
    data: dict,
    name: str | None,
    doc,
    where: Location | None = None,
    overrides: dict[tuple, str] | None = None,
) -> Scaling | None:
    """Select the scale ``name`` (else the spec's own ``scale:``) and apply its input size.

    Sets ``data["scale"]`` so the saved spec reproduces the same model. An invalid ``scales:``
    entry is left to the spec validation (which locates its fields); an unknown name is an error
    located at ``--scale`` (``where``), at ``--set scale=...`` or at the spec's ``scale:``. An
    input set by ``--set input=...`` (``overrides``) wins over the scale's resolution.
    """
    overrides = overrides or {}
    if name is None:
        name = data.get("scale")
        text = overrides.get(("scale",))
        where = Location(f"--set {text}") if text else doc.location(("scale",))
    if name is None:
        return None
    scales = data.get("scales", {})
    if not isinstance(scales, dict):
        return None  # reported, located, by the validation of scales:
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise SpecError.single(
            f"scale: names one of the scales:, received {name!r}",
            location=where or Location("--scale"),
            hint=f"e.g. scale: {next(iter(scales), 'b0')}",
        )
    if name not in scales and any(str(s) == str(name) for s in scales):
        return None  # written as a number in scales: (1: ...): reported, located, as not text
    if name not in scales:
        names = ", ".join(map(str, scales)) or "none (add a scales: section)"
        raise SpecError(
            [
                Problem(
                    where or Location("--scale"),
                    f"unknown scale '{name}'",
                    did_you_mean(str(name), [str(s) for s in scales]) or f"the scales: {names}",
                )
            ]
        )
    data["scale"] = name
    try:
        spec = ScaleSpec.model_validate(scales[name])
    except ValidationError:
        return None  # reported, located, by the validation of scales:
    inp = data.get("input")
    if (
        spec.resolution is not None
        and isinstance(inp, list)
        and inp
        and ("input",) not in overrides
    ):
        spatial = len(inp) - 1
        res = spec.resolution
        if spatial < 1 or len(res) not in (1, spatial):
            raise SpecError.single(
                f"resolution {'x'.join(map(str, res))} does not fit the input {inp}",
                location=doc.location(("scales", name, "resolution")),
                path=f"scales.{name}",
                hint="give one size, or one per spatial direction",
            )
        data["input"] = [*(res * spatial if len(res) == 1 else res), inp[-1]]
    return Scaling(str(name), spec)
