"""Pretrained weights into any spec (``init:``): weight index, matching, transfer table, loading.

``plan`` needs no TensorFlow (validate and summary show the table in milliseconds);
``apply`` puts the weights into a built model.
"""

from __future__ import annotations

from typing import Any

from ..errors import RunError
from ..spec.init import InitSpec
from .match import TransferTable, match
from .source import WeightIndex, read_index
from .targets import spec_targets

__all__ = ["InitSpec", "TransferTable", "apply", "check_share", "init_of", "plan"]


def init_of(spec: Any, source: str | None = None) -> InitSpec | None:
    """The spec's ``init:``, or one made from ``--init SOURCE`` (which replaces its from:)."""
    if source is None:
        return spec.init
    if spec.init is None:
        return InitSpec(**{"from": source})
    return spec.init.model_copy(update={"from_": source})


def plan(spec: Any, source: str | None = None) -> tuple[TransferTable, WeightIndex] | None:
    """The transfer table of ``spec`` (None without init:), read without TensorFlow."""
    init = init_of(spec, source)
    if init is None:
        return None
    index = read_index(init.from_)
    targets, uncovered = spec_targets(spec, index.order)
    table = match(targets, index, init, spec.graph.total_params, uncovered)
    from .applications import check_imagenet_stem

    check_imagenet_stem(spec, table, init.from_)  # keras:EfficientNetB*: Keras' ImageNet stem
    return table, index


def check_share(table: TransferTable) -> None:
    """Exit 1 (RunError) when less than ``min_loaded`` of the parameters start from the source."""
    if table.share < table.min_loaded:
        counts = table.counts()
        raise RunError(
            f"init: only {table.share:.1%} of the parameters load from {table.source} "
            f"({table.loaded_params:,} of {table.total_params:,}; "
            + ", ".join(f"{n} {k}" for k, n in counts.items())
            + f"), under min_loaded {table.min_loaded:.0%}",
            hint="see the transfer table (cnnspec validate) for the fresh and mismatched layers; "
            "rename: maps names, adapt_channels: adapts the first conv",
        )


def apply(model: Any, spec: Any, source: str | None = None) -> TransferTable | None:
    """Load the spec's init weights into ``model`` (built from ``spec``); the table, or None."""
    planned = plan(spec, source)
    if planned is None:
        return None
    table, index = planned
    check_share(table)
    from .load import load_weights

    load_weights(model, table, index, init_of(spec, source).adapt_channels)
    return table
