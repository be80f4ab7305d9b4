"""Shared figure plumbing: exact pixel sizes, atomic PNG writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from ..outpaths import atomic_path

DPI = 100


@dataclass(frozen=True)
class Picture:
    """A PNG written to ``path``, ``width`` x ``height`` pixels."""

    path: Path
    width: int
    height: int


def new_figure(width_px: int, height_px: int):
    """A matplotlib Figure of exactly ``width_px`` x ``height_px`` pixels (no pyplot state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, facecolor="white")


def add_axes_px(fig, left: float, top: float, width: float, height: float):
    """Axes placed in pixels from the figure's top-left corner (exact, predictable layouts)."""
    fw, fh = fig.get_size_inches() * DPI
    return fig.add_axes((left / fw, 1 - (top + height) / fh, width / fw, height / fh))


def save_png(fig, path: str | Path, width: int, height: int) -> Picture:
    """Write the figure as a PNG (temp file + rename, so a reader never sees half a picture)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise RunError(f"-o {path}: pictures are written as PNG; use a .png file name")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", facecolor=fig.get_facecolor())
    return Picture(path, width, height)
