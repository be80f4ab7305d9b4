"""The base of every layer kind (:class:`LayerSpec`) and the helpers the kinds share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from ..shapes import Shape, ShapeError, fmt
from .base import StrictModel
from .types import NAME_RE, FromRef


class LayerSpec(StrictModel):
    """Fields every layer item has: an optional ``name`` and ``from``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    name: str | None = Field(None, pattern=NAME_RE, description="layer name (unique)")
    from_: FromRef | None = Field(
        None, alias="from", description="input: a layer name, -N, or a list (merges)"
    )
    # Where the item came from in the YAML (set by the loader; not part of the language).
    src: Any = Field(None, alias="__src__", exclude=True)

    positional: ClassVar[tuple[str, ...]] = ()
    #: Fields the notation shows even at their default (None: the first positional one), so a
    #: summary never hides what a layer does (``layerscale: 1e-06``, ``lrn: 5``).
    always_shown: ClassVar[tuple[str, ...] | None] = None
    #: Takes several inputs (add, concat, multiply).
    is_merge: ClassVar[bool] = False

    @property
    def kind_name(self) -> str:
        return self.kind  # type: ignore[attr-defined]

    # --- shape rules -----------------------------------------------------------------------
    def with_shapes(self, shape_of: Callable[[str], Shape]) -> LayerSpec:
        """This layer with the shapes of the layers it names filled in (``resize: {like: x}``);
        ``shape_of(name)`` is the output shape of an earlier layer."""
        return self

    def output_shape(self, inputs: list[Shape]) -> Shape:
        return inputs[0]

    def params(self, inputs: list[Shape]) -> int:
        return 0

    def non_trainable(self, inputs: list[Shape]) -> int:
        return 0

    def macs(self, inputs: list[Shape], output: Shape) -> int:
        return 0

    def notation(self, rank: int = 1) -> str:
        """The compact notation of this layer, for summaries: ``3x3, 64, s=2, p=same, relu``.

        ``rank`` is the number of spatial dimensions of its input: a ``K`` given as ``3`` shows
        as ``3x3`` on images.
        """
        written = self.model_dump(exclude_defaults=True, by_alias=True)
        every = self.model_dump(by_alias=True)
        shown = self.positional[:1] if self.always_shown is None else self.always_shown
        values = {k: v for k, v in every.items() if k in written or k in shown}
        if rank > 1 and len(values.get("K", ())) == 1:
            values["K"] = tuple(values["K"]) * rank
        parts = [fmt_value(values.pop(k)) for k in self.positional if k in values]
        act = values.pop("act", None)
        for key, value in values.items():
            if key not in ("name", "from", "kind"):
                parts.append(f"{key}={fmt_value(value)}")
        if act:
            parts.append(str(act))
        return ", ".join(parts)


def fmt_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        if value and all(isinstance(v, (tuple, list)) for v in value):  # [before, after] pairs
            return "[" + ", ".join(f"[{', '.join(map(str, v))}]" for v in value) + "]"
        if value and all(isinstance(v, int) for v in value):
            return "x".join(str(v) for v in value)
        return "[" + ", ".join("null" if v is None else fmt_value(v) for v in value) + "]"
    return str(value)


def spatial_input(inputs: list[Shape], kind: str, ranks: tuple[int, ...] = (2, 3, 4)) -> Shape:
    shape = inputs[0]
    if len(shape) not in ranks:
        if len(shape) == 1:
            raise ShapeError(
                f"{kind} needs a spatial input but received a flat vector of {shape[0]}",
                "move it before flatten/dense, or reshape the vector",
            )
        dims = ", ".join(f"{r - 1}D" for r in ranks)
        raise ShapeError(f"{kind} works on {dims} inputs, received {fmt(shape)}")
    return shape


def check_dilation(s: tuple[int, ...], d: tuple[int, ...], resize: str = "downsample") -> None:
    """Refuse a stride and a dilation both above 1 (Keras cannot); ``resize``: what s does."""
    if max(s) > 1 and max(d) > 1:
        raise ShapeError(
            f"a stride above 1 cannot be combined with a dilation above 1, received s={fmt(s)}, d={fmt(d)}",
            f"use s=1 with dilation, and {resize} in another layer",
        )
