"""Predicting classes of image files with any model source (.keras, SavedModel, TFLite, ONNX).

Images are decoded exactly as training does (``cnnspec.data.load_images``); the model source's
metadata supplies the input shape and class names. Every runtime answers the same question, so the
same files give the same top-k classes whatever the format (up to quantisation error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import RunError

BATCH = 64


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, most probable first."""

    file: str
    top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "top": [{"class": name, "probability": p} for name, p in self.top],
        }


# Pseudo file systems hold no images, and walking them can take minutes or never end.
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Image files from files and folders (folders: their image files, recursively, sorted)."""
    import os

    from .data import IMAGE_EXTENSIONS
    from .data.scan import image_files

    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        resolved = os.path.realpath(p)
        if any(resolved == r or resolved.startswith(r + "/") for r in SYSTEM_ROOTS):
            raise RunError(
                f"{p}: a system path ({resolved}), not an image or a folder of images",
                hint="pass image files or folders of images",
            )
        if p.is_dir():
            found = [Path(f) for f in image_files(p)]  # no links followed; OSError -> RunError
            if not found:
                raise RunError(
                    f"{p}: folder holds no images", hint="supported: " + ", ".join(IMAGE_EXTENSIONS)
                )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif p.exists():  # a FIFO or a device: reading it could block forever
            raise RunError(f"{p}: not a regular file or a folder", hint="pass image files")
        else:
            raise RunError(f"{p}: no such image file or folder")
    if not files:
        raise RunError("no input images given")
    return files


def predict_batch(runtime, images: np.ndarray) -> np.ndarray:
    """Class probabilities of one float32 (N, H, W, C) batch; a runtime failure is a RunError."""
    from .export.base import first_line

    try:
        return runtime.predict(images)
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - runtimes raise their own types for bad inputs
        raise RunError(
            f"{runtime.path}: the {runtime.format} model failed: {first_line(exc)}"
        ) from None


def predict_probabilities(runtime, images: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Class probabilities for a float32 (N, H, W, C) array, run in chunks of ``batch``."""
    if len(images) == 0:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(
        [predict_batch(runtime, images[i : i + batch]) for i in range(0, len(images), batch)]
    )


def top_k(probs: np.ndarray, class_names: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The k most probable (class name, probability) pairs of every row, best first."""
    if probs.shape[-1] != len(class_names):
        raise RunError(
            f"the model outputs {probs.shape[-1]} classes but its metadata names {len(class_names)}"
        )
    k = max(1, min(k, len(class_names)))
    # stable sort on the negated probabilities: ties keep class order, the same on every runtime
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [
        [(class_names[j], float(row[j])) for j in idx]
        for row, idx in zip(probs, order, strict=True)
    ]


@dataclass
class PredictRequest:
    """What ``predict`` was asked, for the predictor of the model's task (``Task.predictor``)."""

    model: str | Path
    files: list[Path]
    k: int
    out: Path  # the folder for written predictions (masks, predictions.csv/.json)
    tile: bool
    plans: list


def predict_files(
    model: str | Path,
    inputs: list[str | Path],
    k: int = 3,
    *,
    out: str | Path | None = None,
    tile: bool = False,
) -> list:
    """Predict image files and folders with any model source; the model's main task says how.

    Classification: the top-k classes (``Prediction``). Segmentation: a mask PNG and an
    overlay per image in ``out`` (``MaskPrediction``; ``tile``: images larger than its input
    in blended overlapping tiles). Multilabel, regression, several heads: every output's
    record per image (``OutputsPrediction``), also written to ``out``/predictions.csv and
    .json. ``out`` defaults to the run's ``predictions/``, else ./predictions."""
    from .modelio import check_model_source, find_model
    from .tasks.saved import plans_of
    from .tfquiet import import_tensorflow

    if k < 1:
        raise RunError(f"--top-k must be at least 1, received {k}")
    files = expand_inputs(inputs)
    # a zip bomb or a foreign model costs milliseconds, not TensorFlow
    _, meta = check_model_source(model)
    plans = plans_of(meta)
    import_tensorflow()  # images are decoded with it (and quietly)
    if out is None:
        run = find_model(model).run_dir
        out = (run if run is not None else Path.cwd()) / "predictions"
    request = PredictRequest(model, files, k, Path(out), tile, plans)
    return plans[0].task.predictor(plans)(request)


def predict_classes(req: PredictRequest) -> list[Prediction]:
    """The top-k classes of every image (one batch of decoded images in memory at a time)."""
    from .data import load_images
    from .data.progress import progress
    from .export.runtime import open_model

    if req.tile:
        raise RunError("--tile predicts a segmentation model's masks; this model classifies")
    runtime, meta = open_model(req.model)
    found: list[Prediction] = []
    with progress("predicting", len(req.files)) as bar:
        for i in range(0, len(req.files), BATCH):
            images, names = load_images(req.files[i : i + BATCH], meta["input_shape"])
            probs = predict_probabilities(runtime, images)
            tops = top_k(probs, meta["class_names"], req.k)
            found += [Prediction(n, top) for n, top in zip(names, tops, strict=True)]
            bar.advance(len(names))
    return found


def predict_masks_run(req: PredictRequest):
    """A segmentation model's masks (cnnspec/tasks/segmentation_io.py)."""
    from .export.runtime import open_model
    from .tasks.segmentation_io import predict_masks

    runtime, meta = open_model(req.model)
    return predict_masks(runtime, meta, req.files, req.out, req.tile)
