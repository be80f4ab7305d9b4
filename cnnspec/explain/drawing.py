"""Overlay pictures of maps and one contact sheet (matplotlib, exact pixel layouts).

2D inputs: the image in grey/colour under the map (jet, half transparent), the peak marked.
1D inputs: the signal's channels as lines over the map drawn as a coloured band. 3D inputs: the
slice through the map's peak (depth axis), drawn as 2D. Maps are scaled to their own maximum;
negative values (integrated gradients) are shown as zero.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..viz._canvas import Picture, add_axes_px, new_figure, save_png

CELL = 160  #: contact sheet cell, pixels
OVERLAY = 320  #: overlay picture side, pixels
TITLE = 36
LABEL = 30
MAX_SHEET_ROWS = 32


def unit(m: np.ndarray) -> np.ndarray:
    """A map scaled to [0, 1] by its maximum (negative evidence clipped)."""
    top = float(m.max())
    return np.clip(m / top, 0.0, 1.0) if top > 0 else np.zeros_like(m)


def draw_2d(ax, x: np.ndarray, m: np.ndarray | None, peak: list[int] | None) -> None:
    lo, hi = float(x.min()), float(x.max())
    shown = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    if shown.shape[-1] == 3:
        ax.imshow(shown, interpolation="nearest")
    else:
        ax.imshow(shown[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if m is not None:
        ax.imshow(unit(m), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
        ax.plot([peak[-1]], [peak[-2]], marker="+", color="white", markersize=10, mew=2)
    ax.set_axis_off()


def draw_1d(ax, x: np.ndarray, m: np.ndarray | None, peak: list[int] | None) -> None:
    length = x.shape[0]
    lo, hi = float(x.min()), float(x.max())
    if m is not None:
        ax.imshow(
            unit(m)[None],
            cmap="jet",
            alpha=0.45,
            aspect="auto",
            extent=(-0.5, length - 0.5, lo, hi if hi > lo else lo + 1.0),
            vmin=0,
            vmax=1,
        )
        ax.axvline(peak[0], color="white", lw=1.5)
    for c in range(min(x.shape[-1], 3)):
        ax.plot(np.arange(length), x[:, c], color="black", lw=0.8)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_3d(ax, x: np.ndarray, m: np.ndarray | None, peak: list[int] | None) -> None:
    depth = peak[0] if peak is not None else x.shape[0] // 2
    draw_2d(ax, x[depth], None if m is None else m[depth], None if peak is None else peak[1:])
    ax.text(0.02, 0.02, f"depth {depth}", color="white", fontsize=7, transform=ax.transAxes)


#: Drawer per number of spatial axes.
DRAWERS: dict[int, Callable] = {1: draw_1d, 2: draw_2d, 3: draw_3d}


def draw(ax, x: np.ndarray, m: np.ndarray | None = None, peak: list[int] | None = None) -> None:
    """Draw an input (and a map over it, its peak marked) by its number of spatial axes."""
    DRAWERS[x.ndim - 1](ax, x, m, peak)


def overlay(path: str | Path, x: np.ndarray, m: np.ndarray, peak: list[int], title: str) -> Picture:
    """One map over its input, titled, as a PNG."""
    width, height = OVERLAY, OVERLAY + TITLE
    fig = new_figure(width, height)
    fig.text(0.5, 1 - TITLE / 2 / height, title, ha="center", va="center", fontsize=9)
    draw(add_axes_px(fig, 4, TITLE, OVERLAY - 8, OVERLAY - 8), x, m, peak)
    return save_png(fig, path, width, height)


def sheet(
    path: str | Path,
    inputs: list[tuple[str, np.ndarray]],
    columns: list[str],
    maps: list[list[tuple[np.ndarray, list[int]] | None]],
) -> Picture:
    """A contact sheet: one row per input (its picture, then one cell per column's map)."""
    rows = inputs[:MAX_SHEET_ROWS]
    width = LABEL // 2 + (len(columns) + 1) * (CELL + 4)
    height = TITLE + len(rows) * (CELL + LABEL)
    fig = new_figure(width, height)
    for j, name in enumerate(["input", *columns]):
        fig.text(
            (LABEL // 2 + j * (CELL + 4) + CELL / 2) / width,
            1 - TITLE / 2 / height,
            name,
            ha="center",
            va="center",
            fontsize=9,
        )
    for i, (label, x) in enumerate(rows):
        top = TITLE + i * (CELL + LABEL)
        draw(add_axes_px(fig, LABEL // 2, top, CELL, CELL), x)
        fig.text(
            (LABEL // 2) / width,
            1 - (top + CELL + LABEL / 2) / height,
            label,
            fontsize=7,
            va="center",
        )
        for j, cell in enumerate(maps[i]):
            if cell is None:
                continue
            m, peak = cell
            draw(add_axes_px(fig, LABEL // 2 + (j + 1) * (CELL + 4), top, CELL, CELL), x, m, peak)
    return save_png(fig, path, width, height)
