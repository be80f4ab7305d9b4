"""Put the matched source arrays into a built Keras model (the only part that needs Keras)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .match import ADAPTED, TransferTable
from .source import WeightIndex


def adapt_kernel(kernel: np.ndarray, channels: int, mode: str) -> np.ndarray:
    """A conv kernel ``(*K, C_src, n)`` for ``channels`` input channels (timm's rules).

    sum: each channel gets the sum of the source's divided by ``channels`` (1 channel: the sum,
    so a grey image gives what its 3-channel copy gave); mean: each gets their mean; repeat:
    the source's channels tiled, scaled by C_src / channels.
    """
    src = kernel.shape[-2]
    if mode == "repeat":
        reps = math.ceil(channels / src)
        tiled = np.concatenate([kernel] * reps, axis=-2)[..., :channels, :]
        return (tiled * (src / channels)).astype(kernel.dtype)
    merged = kernel.sum(axis=-2, keepdims=True) / (channels if mode == "sum" else src)
    return np.repeat(merged, channels, axis=-2).astype(kernel.dtype)


def load_weights(model: Any, table: TransferTable, index: WeightIndex, mode: str | None) -> int:
    """Assign every loaded/adapted row's arrays to ``model``'s layer of that name; returns the
    number of parameters assigned."""
    sources = {s.name: s for s in index.layers}
    done = 0
    with index.arrays() as h5:
        for row in table.pairs():
            layer = model.get_layer(row.layer)
            arrays = [h5[p][()] for p in sources[row.source].paths]
            if row.status == ADAPTED:
                arrays[0] = adapt_kernel(arrays[0], row.shapes[0][-2], mode or "sum")
            for variable, value in zip(layer.weights, arrays, strict=True):
                variable.assign(value)
                done += int(np.prod(value.shape))
    return done
