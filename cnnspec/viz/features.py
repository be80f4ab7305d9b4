"""Feature maps: what chosen layers of a model compute for one image.

Each chosen layer gets a titled band of its most active channels (largest mean activation
first), so a reader sees the edge-like maps of early layers turn into coarser, more abstract maps
deeper in the network.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import RunError
from ._canvas import Picture, add_axes_px, new_figure, save_png
from .filters import conv_layer_names, get_layer

COLS = 8
CELL = 96
GAP = 4
BAND = 30  # a layer's title band
MAX_MAPS = 16
DEFAULT_LAYERS = 3


def default_layers(model) -> list[str]:
    """The first few conv layers, the ones whose maps still look like the image."""
    return conv_layer_names(model)[:DEFAULT_LAYERS]


def layout_height(n_maps: list[int]) -> int:
    """Picture height for layers showing ``n_maps`` maps each (plus the input image band)."""
    rows = [1] + [math.ceil(min(n, MAX_MAPS) / COLS) for n in n_maps]
    return sum(BAND + r * (CELL + GAP) for r in rows) + GAP


def feature_maps(model, image: np.ndarray, layers: list[str]) -> list[np.ndarray]:
    """The (h, w, c) outputs of ``layers`` for one float32 image in [0, 255]."""
    import keras

    outputs = []
    for name in layers:
        layer = get_layer(model, name)
        try:
            outputs.append(layer.output)
        except (AttributeError, ValueError):
            raise RunError(
                f"layer '{name}' sits inside a nested model; its maps cannot be tapped",
                hint="choose a layer of the outer model",
            ) from None
    probe = keras.Model(model.inputs[0] if len(model.inputs) == 1 else model.inputs, outputs)
    results = probe(image[None].astype(np.float32), training=False)
    if not isinstance(results, (list, tuple)):
        results = [results]
    maps = []
    for name, r in zip(layers, results, strict=True):
        r = np.asarray(r)
        if r.ndim != 4:
            raise RunError(
                f"layer '{name}' outputs shape {tuple(r.shape[1:])}, not (height, width, channels) "
                "feature maps",
                hint="choose conv, pooling, activation or normalisation layers",
            )
        maps.append(r[0])
    return maps


def plot_features(
    model,
    image: np.ndarray,
    out: str | Path,
    layers: list[str] | None = None,
    *,
    image_name: str = "",
) -> Picture:
    """Draw the input image and the most active feature maps of each chosen layer to a PNG."""
    layers = list(layers) if layers else default_layers(model)
    if not layers:
        raise RunError("the model has no convolution layers; pass --layers")
    maps = feature_maps(model, image, layers)
    width = COLS * (CELL + GAP) + GAP
    height = layout_height([m.shape[-1] for m in maps])
    fig = new_figure(width, height)
    top = 0
    top = _band(fig, top, width, height, f"input {image_name}".strip() + f" {image.shape[:2]}")
    ax = add_axes_px(fig, GAP, top, CELL, CELL)
    shown = image / 255.0
    if shown.shape[-1] == 1:
        ax.imshow(shown[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(shown, 0, 1), interpolation="nearest")
    ax.set_axis_off()
    top += CELL + GAP
    for name, fmap in zip(layers, maps, strict=True):
        h, w, c = fmap.shape
        order = np.argsort(-fmap.mean(axis=(0, 1)), kind="stable")[:MAX_MAPS]
        top = _band(
            fig,
            top,
            width,
            height,
            f"{name}: {c} maps {h}x{w}"
            + (f" (top {len(order)} by mean activation)" if c > len(order) else ""),
        )
        for i, ch in enumerate(order):
            r, col = divmod(i, COLS)
            ax = add_axes_px(fig, GAP + col * (CELL + GAP), top + r * (CELL + GAP), CELL, CELL)
            ax.imshow(fmap[:, :, ch], cmap="viridis", interpolation="nearest")
            ax.set_axis_off()
            ax.text(
                0.04,
                0.96,
                str(int(ch)),
                color="white",
                fontsize=7,
                va="top",
                ha="left",
                transform=ax.transAxes,
            )
        top += math.ceil(len(order) / COLS) * (CELL + GAP)
    return save_png(fig, out, width, height)


def _band(fig, top: float, width: int, height: int, text: str) -> float:
    fig.text(
        GAP / width, 1 - (top + BAND / 2 + 2) / height, text, ha="left", va="center", fontsize=10
    )
    return top + BAND
