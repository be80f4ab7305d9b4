"""The run directory: resolved spec, history.csv, curves.png, meta.json, metrics.json.

Layout (``runs/<name>/<timestamp>/`` by default)::

    spec.yaml        the fully resolved spec (overrides applied); --resume reads it back
    meta.json        name, input shape, class names, preprocess, output name, versions
    history.csv      one row per epoch (1-based), appended across resumes
    curves.png       loss and accuracy per epoch
    metrics.json     final train/val/test metrics, epochs done, wall time, images/s, status
    model.keras      the inference model (auxiliary heads dropped)
    checkpoints/     training state of the last good epoch (callbacks.Checkpoint; --resume)
    logs/            TensorBoard

Every file is written atomically (a temporary file in the same folder, then a rename), so a
kill leaves the previous version or the new one, never half a file; a run is *complete*
(``is_complete``) once its model.keras and metrics.json are there.
"""

from __future__ import annotations

import csv
import json
import math
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import RunError
from ..outpaths import atomic_path, write_text_atomic

HISTORY = "history.csv"
METRICS = "metrics.json"
META = "meta.json"
SPEC = "spec.yaml"
MODEL = "model.keras"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
LOGS = "logs"


def new_run_dir(name: str, root: str | Path = "runs") -> Path:
    """A fresh ``root/<name>/<timestamp>`` directory (suffixed if the second is taken)."""
    base = Path(root) / name / time.strftime("%Y%m%d-%H%M%S")
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    path.mkdir(parents=True)
    return path


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically."""
    write_text_atomic(path, text)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (a kill never leaves half a file)."""
    write_text(path, json.dumps(_finite(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object written by ``write_json``, or None if absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(run: str | Path) -> bool:
    """Whether ``run`` holds a finished run: a readable model.keras and its metrics.json.

    Runs killed before their end (or written before model.keras was atomic: a 0-byte file)
    are not complete; ``runs/<name>`` lookups skip them.
    """
    run = Path(run)
    model = run / MODEL
    return (
        model.is_file()
        and model.stat().st_size > 0
        and zipfile.is_zipfile(model)
        and read_json(run / METRICS) is not None
    )


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def read_history(path: Path) -> list[dict[str, Any]]:
    """Rows of history.csv as dicts of floats (``epoch`` as int); [] if absent."""
    if not path.exists():
        return []
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    rows.append(
                        {
                            k: (int(v) if k == "epoch" else float(v))
                            for k, v in row.items()
                            if v not in ("", None)
                        }
                    )
                    if not isinstance(rows[-1].get("epoch"), int) or None in row:
                        raise ValueError("no epoch" if None not in row else "extra cells")
                except (TypeError, ValueError) as exc:
                    raise RunError(
                        f"{path}:{line}: not a history row of cnnspec train ({exc})",
                        hint=f"fix or delete that row of {path.name}",
                    ) from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RunError(f"{path}: cannot read the run's history: {exc}") from None
    return rows


def write_history(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rewrite history.csv atomically with the union of the rows' columns."""
    rows = list(rows)
    columns: list[str] = ["epoch"]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})


def _csv_value(v: Any) -> Any:
    return repr(float(v)) if isinstance(v, float) else v


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """curves.png: loss (left) and accuracy (right), train and validation, per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = [row.get(key, math.nan) for row in history]
            if any(math.isfinite(v) for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def save_model(model: Any, path: Path) -> None:
    """``model.save`` to a .keras file, atomically (kill -9 used to leave a 0-byte file)."""
    with atomic_path(path) as tmp:
        model.save(tmp)
    if path.name == MODEL and (path.parent / META).is_file():  # predict checks the pair
        from ..digest import record_model_digest

        record_model_digest(path, path.parent / META)


def versions() -> dict[str, str]:
    """cnnspec / TensorFlow / Keras / Python versions for meta.json (one shape: Versions)."""
    from ..versions import Versions

    return Versions.current().to_dict()
