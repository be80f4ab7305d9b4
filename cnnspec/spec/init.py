"""`init:` — start a spec from pretrained weights (pure Python; applied by :mod:`cnnspec.init`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import StrictModel

#: How the first conv's kernel is adapted to another number of input channels (timm's rules).
ADAPT_MODES = ("sum", "mean", "repeat")


class InitSpec(StrictModel):
    """Where the starting weights come from and which of them to take."""

    from_: str = Field(
        alias="from",
        min_length=1,
        description="a .keras file, a .weights.h5 file, a run directory, or keras:<Application>",
    )
    skip: list[str] = Field(
        default_factory=list,
        description="layers of this spec left fresh (names or shell patterns: head_*)",
    )
    rename: dict[str, str] = Field(
        default_factory=dict,
        description="source layer name -> this spec's layer name (a trailing * renames a prefix)",
    )
    adapt_channels: Literal["sum", "mean", "repeat"] | None = Field(
        None,
        description="adapt the first conv's kernel to another input channel count: sum (1 "
        "channel: the sum of the source's), mean, or repeat (tiled, rescaled)",
    )
    min_loaded: float = Field(
        0.0, ge=0.0, le=1.0, description="stop (exit 1) when a smaller share of parameters loads"
    )

    @field_validator("rename")
    @classmethod
    def _one_target_each(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for old, new in v.items():
            if new in seen:
                raise ValueError(f"'{old}' and '{seen[new]}' are both renamed to '{new}'")
            seen[new] = old
        return v
