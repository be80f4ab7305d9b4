"""Confusion-matrix pictures: rows are true classes, columns predictions, colour = row share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._canvas import Picture, add_axes_px, new_figure, save_png

MAX_ANNOTATED = 30


def plot_confusion(
    matrix: np.ndarray, class_names: list[str], out: str | Path, *, title: str = ""
) -> Picture:
    """Draw a confusion matrix with counts in the cells (up to 30 classes) to a PNG."""
    m = np.asarray(matrix, dtype=np.int64)
    n = len(class_names)
    cell = int(max(14, min(48, 560 // max(n, 1))))
    label_w = int(min(160, 60 + 7 * max(len(c) for c in class_names)))
    side = n * cell
    width = max(label_w + side + 110, 360)
    height = 60 + side + label_w + 10
    fig = new_figure(width, height)
    fig.text(
        0.5, 1 - 20 / height, title or "confusion matrix", ha="center", va="center", fontsize=11
    )
    ax = add_axes_px(fig, label_w, 50, side, side)
    totals = m.sum(axis=1, keepdims=True)
    share = np.divide(m, totals, out=np.zeros(m.shape, float), where=totals > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = np.arange(n)
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= MAX_ANNOTATED:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        str(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    cax = add_axes_px(fig, label_w + side + 16, 50, 14, side)
    fig.colorbar(image, cax=cax, label="share of the true class")
    return save_png(fig, out, width, height)
