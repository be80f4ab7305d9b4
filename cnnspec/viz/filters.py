"""A conv layer's kernels as a picture.

For a layer that sees the input image (1 or 3 input channels) every filter is one cell, shown in
grey or colour: the edge and colour-blob detectors of Zeiler & Fergus. For deeper layers (many
input channels) the picture is a grid, one row per filter and one column per input channel.
Each filter is scaled on its own to the full grey/colour range, so weak filters stay visible.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import RunError, did_you_mean
from ._canvas import Picture, add_axes_px, new_figure, save_png

CELL = 80  # pixels per filter cell (first-layer grid)
SMALL_CELL = 40  # pixels per kernel in a filters x channels grid
GAP = 6
TITLE = 44
LABEL = 36  # left/top label bands of the filters x channels grid
MAX_FILTERS = 64
MAX_CHANNELS = 16


def iter_layers(model):
    """Every layer of a model, descending into nested models (backbones), in order."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers") and layer is not model:
            yield from iter_layers(layer)


def conv_kernel(layer) -> np.ndarray | None:
    """A layer's 2D kernel (kh, kw, in, out), or None if it has none."""
    for attr in ("kernel", "depthwise_kernel"):
        w = getattr(layer, attr, None)
        if w is not None and len(w.shape) == 4:
            return np.asarray(w.numpy() if hasattr(w, "numpy") else w, np.float32)
    return None


def conv_layer_names(model) -> list[str]:
    """Names of the layers with 2D kernels, input side first."""
    return [layer.name for layer in iter_layers(model) if conv_kernel(layer) is not None]


def get_layer(model, name: str):
    """A layer by name anywhere in the model (nested models too), or RunError with a hint."""
    layers = {layer.name: layer for layer in iter_layers(model)}
    if name not in layers:
        hint = did_you_mean(name, list(layers)) or "layers: " + ", ".join(list(layers)[:12])
        raise RunError(f"the model has no layer '{name}'", hint=hint)
    return layers[name]


def _normalise(w: np.ndarray) -> np.ndarray:
    lo, hi = float(w.min()), float(w.max())
    return (w - lo) / (hi - lo) if hi > lo else np.full_like(w, 0.5)


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for n cells."""
    cols = max(1, math.ceil(math.sqrt(n)))
    return math.ceil(n / cols), cols


def plot_filters(model, out: str | Path, layer: str | None = None, *, title: str = "") -> Picture:
    """Draw ``layer``'s kernels (default: the first conv layer) to a PNG."""
    names = conv_layer_names(model)
    if not names:
        raise RunError("the model has no convolution layers to draw")
    if layer is None:
        layer = names[0]
    kernel = conv_kernel(get_layer(model, layer))
    if kernel is None:
        raise RunError(
            f"layer '{layer}' has no 2D convolution kernel", hint="conv layers: " + ", ".join(names)
        )
    kh, kw, cin, cout = kernel.shape
    heading = title or f"{layer}: {cout} filters {kh}x{kw} over {cin} channel{'s' * (cin > 1)}"
    if cin in (1, 3):
        return _plot_image_filters(kernel, out, heading)
    return _plot_channel_grid(kernel, out, heading)


def _plot_image_filters(kernel: np.ndarray, out, heading: str) -> Picture:
    _, _, cin, cout = kernel.shape
    n = min(cout, MAX_FILTERS)
    rows, cols = grid_shape(n)
    width = max(cols * (CELL + GAP) + GAP, 320)
    height = TITLE + rows * (CELL + GAP) + GAP
    fig = new_figure(width, height)
    fig.text(
        0.5,
        1 - 22 / height,
        heading + ("" if n == cout else f" (first {n})"),
        ha="center",
        va="center",
        fontsize=11,
    )
    x0 = (width - (cols * (CELL + GAP) - GAP)) / 2
    for i in range(n):
        r, c = divmod(i, cols)
        ax = add_axes_px(fig, x0 + c * (CELL + GAP), TITLE + r * (CELL + GAP), CELL, CELL)
        w = _normalise(kernel[:, :, :, i])
        if cin == 1:
            ax.imshow(w[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(w, interpolation="nearest")
        ax.set_axis_off()
    return save_png(fig, out, width, height)


def _plot_channel_grid(kernel: np.ndarray, out, heading: str) -> Picture:
    _, _, cin, cout = kernel.shape
    rows, cols = min(cout, MAX_FILTERS), min(cin, MAX_CHANNELS)
    width = max(LABEL + cols * (SMALL_CELL + 2) + GAP, 360)
    height = TITLE + LABEL + rows * (SMALL_CELL + 2) + GAP
    fig = new_figure(width, height)
    shown = "" if (rows, cols) == (cout, cin) else f" (first {rows} x {cols})"
    fig.text(0.5, 1 - 22 / height, heading + shown, ha="center", va="center", fontsize=11)
    fig.text(
        (LABEL + cols * (SMALL_CELL + 2) / 2) / width,
        1 - (TITLE + LABEL / 2) / height,
        "input channel ->",
        ha="center",
        va="center",
        fontsize=9,
    )
    fig.text(
        LABEL / 2 / width,
        1 - (TITLE + LABEL + rows * (SMALL_CELL + 2) / 2) / height,
        "filter ->",
        ha="center",
        va="center",
        rotation=90,
        fontsize=9,
    )
    for f in range(rows):
        w = _normalise(kernel[:, :, :cols, f])  # one scale per filter: compare its channels
        for c in range(cols):
            ax = add_axes_px(
                fig,
                LABEL + c * (SMALL_CELL + 2),
                TITLE + LABEL + f * (SMALL_CELL + 2),
                SMALL_CELL,
                SMALL_CELL,
            )
            ax.imshow(w[:, :, c], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
    return save_png(fig, out, width, height)
