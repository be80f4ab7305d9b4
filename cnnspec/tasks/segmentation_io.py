"""What ``evaluate`` and ``predict`` do for a segmentation model (any runtime: .keras,
SavedModel, TFLite, ONNX).

- ``evaluate_masks``: the pixel confusion matrix of a split (255 = ignore left out), per-class
  IoU / Dice / precision / recall, mean IoU, pixel accuracy; streamed a batch at a time.
- ``predict_masks``: for each image a mask PNG of class indices (a palette PNG: the indices are
  the classes, the palette only shows them) and a colour overlay, written to a folder, at the
  image's own size. ``tile=True``: an image larger than the input is predicted in overlapping
  input-sized tiles whose probabilities are blended (weighted towards each tile's centre);
  otherwise it is resized to the input and its mask resized back (nearest neighbour).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from .segmentation import IGNORE, confusion, labels_of, report_of

#: Colours of classes 1.. (class 0, the background, is left uncoloured in overlays).
PALETTE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
]  # fmt: skip


def is_segmentation(meta: dict[str, Any]) -> bool:
    return meta.get("task") == "segmentation"


def threshold_of(meta: dict[str, Any]) -> float:
    outputs = meta.get("outputs") or [{}]
    return float(outputs[0].get("threshold", 0.5))


# --- evaluate ---------------------------------------------------------------------------------------


def evaluate_masks(runtime, meta: dict[str, Any], data, names: list[str], batch: int = 32):
    """(report, number of images) of the splits ``names`` of mask ``data``."""
    from ..data.images import read_errors
    from ..data.progress import progress
    from ..predict import predict_batch

    classes = list(meta["class_names"])
    k = max(len(classes), 2)
    cm = np.zeros((k, k), np.int64)
    count = 0
    total = sum(int(data.sizes.get(n, 0)) for n in names) or None
    with progress("evaluating", total) as bar:
        for name in names:
            try:
                for x, y in data.split(name).batch(batch).prefetch(2).as_numpy_iterator():
                    probs = predict_batch(runtime, np.asarray(x, np.float32))
                    cm += confusion(labels_of(probs, threshold_of(meta)), y, k)
                    count += len(x)
                    bar.advance(len(x))
            except read_errors() as exc:
                raise data.read_failure(exc, meta["input_shape"], f"reading {name}") from None
    if len(classes) < k:
        classes = [*classes, *(str(i) for i in range(len(classes), k))]
    report = report_of(cm, classes)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / np.maximum(cm.sum(0), 1), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / np.maximum(cm.sum(1), 1), 0.0)
    for i, row in enumerate(report["per_class"]):
        f1 = 2 * precision[i] * recall[i] / max(precision[i] + recall[i], 1e-12)
        row.update(precision=float(precision[i]), recall=float(recall[i]), f1=float(f1),
                   support=row["pixels"])  # fmt: skip
    return report, count


def evaluation_of(report: dict[str, Any], n: int, **fields: Any):
    """The ``Evaluation`` of a segmentation report (pixel accuracy as its accuracy, the
    macro P/R/F1 over classes present, IoU and Dice in ``extra``)."""
    from ..evaluate import Evaluation

    rows = report["per_class"]
    present = [r for r in rows if r["pixels"] > 0]
    macro = {m: float(np.mean([r[m] for r in present])) if present else 0.0
             for m in ("precision", "recall", "f1")}  # fmt: skip
    extra = {"task": "segmentation", "mean_iou": report["mean_iou"], "dice": report["dice"],
             "pixel_accuracy": report["pixel_accuracy"]}  # fmt: skip
    return Evaluation(
        class_names=[r["class"] for r in rows], n=n, accuracy=report["pixel_accuracy"],
        top_k=None, top_k_accuracy=None, per_class=rows, macro=macro,
        confusion=report["confusion_matrix"], extra=extra, **fields,
    )  # fmt: skip


# --- predict ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskPrediction:
    """The mask of one image: its PNG files and the share of pixels per class."""

    file: str
    mask: str
    overlay: str
    pixels: dict[str, float]
    tiles: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "mask": self.mask, "overlay": self.overlay,
                "pixels": self.pixels, "tiles": self.tiles}  # fmt: skip


def tile_starts(size: int, window: int, overlap: float) -> list[int]:
    """Window starts covering ``size`` with at least ``overlap`` x window shared by neighbours."""
    if size <= window:
        return [0]
    stride = max(1, int(window * (1 - overlap)))
    starts = list(range(0, size - window, stride))
    return [*starts, size - window]


def _weights(h: int, w: int) -> np.ndarray:
    """Blending weights of a tile: highest at its centre, small (not zero) at its edges."""
    wy = 1.0 - np.abs(np.linspace(-1, 1, h)) * 0.9
    wx = 1.0 - np.abs(np.linspace(-1, 1, w)) * 0.9
    return (wy[:, None] * wx[None, :]).astype(np.float32)[..., None]


def predict_tiled(runtime, image: np.ndarray, input_shape, overlap: float = 0.25, batch: int = 16):
    """Blended probabilities (H, W, C) of an image at least as large as the input."""
    from ..predict import predict_batch

    h, w = int(input_shape[0]), int(input_shape[1])
    rows, cols = tile_starts(image.shape[0], h, overlap), tile_starts(image.shape[1], w, overlap)
    boxes = [(r, c) for r in rows for c in cols]
    weight = _weights(h, w)
    total = weights = None
    for i in range(0, len(boxes), batch):
        chunk = boxes[i : i + batch]
        tiles = np.stack([image[r : r + h, c : c + w] for r, c in chunk]).astype(np.float32)
        probs = predict_batch(runtime, tiles)
        if total is None:
            total = np.zeros((*image.shape[:2], probs.shape[-1]), np.float32)
            weights = np.zeros((*image.shape[:2], 1), np.float32)
        for (r, c), p in zip(chunk, probs, strict=True):
            total[r : r + h, c : c + w] += p * weight
            weights[r : r + h, c : c + w] += weight
    return total / weights, len(boxes)


def _decode(path: Path, input_shape) -> np.ndarray:
    """An image file at its own size, with the model's channels (uint8 -> float32); its header
    is read once (size and pixel bound)."""
    from ..data.images import decode_file

    size = [*image_size(path), int(input_shape[-1])]
    return np.asarray(decode_file(path, size, checked=True), np.float32)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of the image as viewers show it (a JPEG's EXIF orientation 5-8 turns it
    a quarter: decode_file turns it upright too), read from the header; RunError for an image
    over the pixel bound or one that cannot be read."""
    from ..data.images import check_image_pixels

    size = check_image_pixels(path, upright=True)
    if size is None:
        raise RunError(f"{path}: cannot read the image (not an image file PIL can identify)")
    return size


def _resize_nearest(labels: np.ndarray, h: int, w: int) -> np.ndarray:
    from ..data.masks import resize_nearest

    return resize_nearest(labels[None].astype(np.uint8), h, w)[0]


def write_pngs(image: np.ndarray, labels: np.ndarray, out: Path, stem: str) -> tuple[Path, Path]:
    """``<stem>_mask.png`` (palette PNG of class indices) and ``<stem>_overlay.png``."""
    from PIL import Image

    from ..outpaths import write_bytes_atomic

    mask = Image.fromarray(labels.astype(np.uint8), mode="L").convert("P")
    flat = [v for i in range(256) for v in (PALETTE[i % len(PALETTE)] if i else (0, 0, 0))]
    flat[IGNORE * 3 : IGNORE * 3 + 3] = [255, 255, 255]
    mask.putpalette(flat)
    colours = np.array(flat, np.float32).reshape(256, 3)[labels]
    base = image if image.shape[-1] == 3 else np.repeat(image[..., :1], 3, axis=-1)
    shown = labels[..., None] > 0
    blend = np.where(shown, 0.45 * base + 0.55 * colours, base)
    overlay = Image.fromarray(np.clip(np.rint(blend), 0, 255).astype(np.uint8), mode="RGB")
    paths = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
    for picture, path in zip((mask, overlay), paths, strict=True):
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        write_bytes_atomic(path, buffer.getvalue())
    return paths


def predict_masks(runtime, meta: dict[str, Any], files: list[Path], out: Path, tile: bool):
    """One ``MaskPrediction`` per image file; PNGs written under ``out``."""
    from ..data.progress import progress
    from ..predict import predict_batch

    shape = meta["input_shape"]
    classes = list(meta["class_names"])
    out.mkdir(parents=True, exist_ok=True)
    stems: set[str] = set()
    found = []
    with progress("predicting masks", len(files)) as bar:
        for path in files:
            image = _decode(Path(path), shape)
            h, w = image.shape[:2]
            if tile and h >= shape[0] and w >= shape[1]:
                probs, tiles = predict_tiled(runtime, image, shape)
            else:
                from ..data.images import convert

                small = np.asarray(convert(image, shape), np.float32)[None]
                probs, tiles = predict_batch(runtime, small)[0], 1
            labels = labels_of(probs[None], threshold_of(meta))[0]
            if labels.shape != (h, w):
                labels = _resize_nearest(labels, h, w)
            stem = Path(path).stem
            while stem in stems:
                stem += "_"
            stems.add(stem)
            mask, overlay = write_pngs(image, labels, out, stem)
            counts = np.bincount(labels.reshape(-1), minlength=len(classes))
            share = {classes[i] if i < len(classes) else str(i): float(c / labels.size)
                     for i, c in enumerate(counts) if c}  # fmt: skip
            found.append(MaskPrediction(str(path), str(mask), str(overlay), share, tiles))
            bar.advance(1)
    return found
