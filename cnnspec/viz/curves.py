"""Training curves from a run's ``history.csv`` (loss and accuracy, train vs validation),
with a transfer run's phase 2 (``history_phase2.csv``) after its phase 1."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import RunError
from ._canvas import Picture, add_axes_px, new_figure, save_png

WIDTH, HEIGHT = 1100, 420


HISTORY = "history.csv"
HISTORY_PHASE2 = "history_phase2.csv"  # transfer learning's phase 2 (train/finetune.py)


def find_run(path: str | Path) -> Path:
    """The run folder behind ``path``: a run, its history.csv, or ``runs/<name>`` (its latest
    run with a history, as the other commands pick the latest run)."""
    path = Path(path)
    if not path.is_dir() or (path / HISTORY).is_file():
        return path
    try:
        runs = sorted(c for c in path.iterdir() if c.is_dir() and (c / HISTORY).is_file())
    except OSError as exc:
        raise RunError(f"{path}: cannot read this folder: {exc.strerror or exc}") from None
    return runs[-1] if runs else path  # timestamps sort chronologically


def read_history(path: str | Path) -> dict[str, list[float]]:
    """history.csv as {column: values}, with an ``epoch`` column (1-based if absent).

    ``path``: a history file, a run folder or ``runs/<name>``; a run's phase 2
    (history_phase2.csv) follows its phase 1, epochs numbered on, and ``phase`` marks it.
    """
    path = find_run(path)
    if path.is_dir():
        phase2 = path / HISTORY_PHASE2
        path = path / HISTORY
        if phase2.is_file() and path.is_file():
            return _both_phases(_read_csv(path), _read_csv(phase2))
    return _read_csv(path)


def _both_phases(one: dict[str, list[float]], two: dict[str, list[float]]) -> dict:
    n1, n2 = len(one["epoch"]), len(two["epoch"])
    last = one["epoch"][-1]
    out = {
        key: one.get(key, [math.nan] * n1) + two.get(key, [math.nan] * n2) for key in {**one, **two}
    }
    out["epoch"] = one["epoch"] + [last + e for e in two["epoch"]]
    out["phase"] = [1.0] * n1 + [2.0] * n2
    return out


def _read_csv(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise RunError(
            f"{path}: no training history",
            hint="pass a run folder of cnnspec train (runs/<name>/<timestamp> or runs/<name>)",
        )
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunError(f"{path}: cannot read history: {exc}") from None
    if not rows:
        raise RunError(f"{path}: the history has no epochs")
    columns: dict[str, list[float]] = {}
    for key in rows[0]:
        try:
            columns[key] = [float(r[key]) if r[key] not in ("", None) else math.nan for r in rows]
        except (TypeError, ValueError):
            continue  # a non-numeric column (e.g. a timestamp) is not a curve
    if "epoch" not in columns:
        columns["epoch"] = [float(i + 1) for i in range(len(rows))]
    if "loss" not in columns:
        raise RunError(f"{path}: the history has no 'loss' column")
    return columns


def plot_curves(history: str | Path, out: str | Path, *, title: str = "") -> Picture:
    """Loss and accuracy against epochs, train solid and validation dashed; best val marked."""
    h = read_history(history)
    epochs = h["epoch"]
    fig = new_figure(WIDTH, HEIGHT)
    if title:
        fig.text(0.5, 1 - 16 / HEIGHT, title, ha="center", va="center", fontsize=12)
    panels = [("loss", "loss", min), ("accuracy", "accuracy", max)]
    for i, (key, label, best) in enumerate(panels):
        ax = add_axes_px(fig, 70 + i * 540, 56, 440, 310)
        ax.set_title(label)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        drawn = False
        if "phase" in h:  # where phase 2 (fine-tuning) begins
            start = next(e for e, p in zip(epochs, h["phase"], strict=True) if p == 2.0)
            ax.axvline(start - 0.5, color="tab:green", lw=0.8, ls="-.")
            ax.text(start - 0.5, 1.0, " phase 2", transform=ax.get_xaxis_transform(),
                    va="top", fontsize=8, color="tab:green")  # fmt: skip
        for prefix, style, colour in (("", "-", "tab:blue"), ("val_", "--", "tab:orange")):
            values = h.get(prefix + key)
            if values is None:
                continue
            ax.plot(
                epochs,
                values,
                style,
                color=colour,
                marker="o",
                markersize=3,
                label=("validation" if prefix else "train"),
            )
            drawn = True
            if prefix:
                finite = [(v, e) for v, e in zip(values, epochs, strict=True) if not math.isnan(v)]
                if finite:
                    v, e = best(finite)
                    ax.axvline(e, color="grey", lw=0.8, ls=":")
                    ax.plot([e], [v], "o", color=colour, markersize=7, markerfacecolor="none")
                    right_half = e > (epochs[0] + epochs[-1]) / 2
                    ax.annotate(  # text on the inner side of the marker, never off the axes
                        f"best val {v:.3f} @ epoch {int(e)}",
                        (e, v),
                        textcoords="offset points",
                        xytext=(-8 if right_half else 8, 10 if best is max else -14),
                        ha="right" if right_half else "left",
                        fontsize=8,
                    )
        if drawn:
            ax.legend(loc="best", fontsize=9)
        else:
            ax.text(
                0.5,
                0.5,
                f"no '{key}' in history",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
    return save_png(fig, out, WIDTH, HEIGHT)
