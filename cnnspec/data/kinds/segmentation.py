"""Segmentation sources: images with a mask each (``cnnspec/data/masks.py`` reads and caches).

- ``digits_segmentation``: 1 to 3 of scikit-learn's digits on a 32x32 canvas (no download,
  deterministic); the mask gives every ink pixel its digit's class (``1`` .. ``10`` for digits
  0..9, ``0`` background) and the faint rim of each digit 255 (ignore);
- a folder with ``images/`` and ``masks/`` (the same file stem; optional ``classes.txt``);
- a CSV manifest with the header ``image,mask`` (paths relative to the CSV).

An ``.npz`` whose ``y`` is (N, H, W) is read by the npz kind through ``masks.read_npz``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ...errors import RunError
from ..registry import SourceKind

SIZE = 32
COUNT = 1500
SEED = 20240517
NAMES = ["background", *(str(i) for i in range(10))]
INK = 6 * 255 / 16  # at least 6 of the digits' 16 grey levels: the digit's pixels
FAINT = 255 / 16  # 1..5 levels: the rim, neither digit nor background (ignored)


def canvases(count: int = COUNT, seed: int = SEED, size: int = SIZE):
    """uint8 canvases (N, size, size, 1) and masks (N, size, size) of 1 to 3 digits each, each
    digit in its own quadrant at a random offset."""
    from ..arrays import digits

    x, y, _ = digits()
    rng = np.random.default_rng(seed)
    half = size // 2
    images = np.zeros((count, size, size), np.float32)
    masks = np.zeros((count, size, size), np.uint8)
    for i in range(count):
        for q in rng.permutation(4)[: int(rng.integers(1, 4))]:
            k = int(rng.integers(len(x)))
            top = (q // 2) * half + int(rng.integers(0, half - 7))
            left = (q % 2) * half + int(rng.integers(0, half - 7))
            digit = x[k, :, :, 0]
            images[i, top : top + 8, left : left + 8] = digit
            window = masks[i, top : top + 8, left : left + 8]
            window[digit >= INK] = y[k] + 1
            window[(digit >= FAINT) & (digit < INK)] = 255
    return np.clip(np.rint(images), 0, 255).astype(np.uint8)[..., None], masks


def read_digits(source: str, req):
    from ..masks import MaskParts, resize_nearest
    from ..splits import split_arrays

    x, masks = canvases()
    masks = resize_nearest(masks, *req.shape[:2])
    index = split_arrays(np.arange(COUNT), np.zeros(COUNT, np.int32), req.validation_split,
                         req.test_split)  # fmt: skip
    splits = tuple(None if p is None else (x[p[0]], masks[p[0]]) for p in index)
    return MaskParts(splits, list(NAMES), [source, str(SEED), str(COUNT)])


# --- files ------------------------------------------------------------------------------------------


def _split_files(images: list[str], masks: np.ndarray, req):
    from ..splits import split_arrays

    n = len(images)
    index = split_arrays(np.arange(n), np.zeros(n, np.int32), req.validation_split,
                         req.test_split)  # fmt: skip
    return tuple(None if p is None else ([images[i] for i in p[0]], masks[p[0]]) for p in index)


def _parts(root: Path, pairs: list[tuple[str, str]], req):
    from ..masks import MaskParts, class_names_file, default_names, read_mask_files

    if not pairs:
        raise RunError(f"data {root} has no image/mask pairs")
    images = [p for p, _ in pairs]
    masks = read_mask_files([m for _, m in pairs], *req.shape[:2], echo=req.echo)
    from ..masks import check_masks

    top = check_masks(masks, str(root))
    names = class_names_file(root if root.is_dir() else root.parent)
    if names is not None and len(names) <= top:
        raise RunError(
            f"data {root}: the masks hold class {top} but classes.txt names {len(names)} classes",
            hint="one class name per line in classes.txt, line i naming class i",
        )
    return MaskParts(_split_files(images, masks, req), default_names(top, names), [str(root)])


def is_mask_folder(source: str) -> bool:
    return os.path.isdir(os.path.join(source, "images")) and os.path.isdir(
        os.path.join(source, "masks")
    )


def read_folder(source: str, req):
    from ..scan import image_files

    root = Path(os.path.realpath(source))
    masks = {Path(f).stem: f for f in image_files(root / "masks")}
    pairs, missing = [], []
    for image in image_files(root / "images"):
        stem = Path(image).stem
        (pairs.append((image, masks[stem])) if stem in masks else missing.append(image))
    if missing:
        raise RunError(
            f"data {root}: {len(missing)} image(s) have no mask of the same name in masks/, "
            f"e.g. {missing[0]}",
            hint="every images/NAME.* needs a masks/NAME.png",
        )
    return _parts(root, pairs, req)


def is_mask_manifest(source: str) -> bool:
    if not (source.lower().endswith(".csv") and os.path.isfile(source)):
        return False
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            head = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return [c.strip().lower() for c in head] == ["image", "mask"]


def read_manifest(source: str, req):
    from ..scan import check_image_file

    root = Path(os.path.realpath(source))
    pairs = []
    with open(root, newline="", encoding="utf-8-sig") as fh:
        for number, row in enumerate(csv.reader(fh), start=1):
            if number == 1 or not row or all(not c.strip() for c in row):
                continue
            where = f"{root}:{number}"
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                raise RunError(f"{where}: a row needs an image and a mask; received {row!r}")
            image, mask = (os.path.join(root.parent, c.strip()) for c in row[:2])
            check_image_file(image, where)
            check_image_file(mask, where)
            pairs.append((image, mask))
    return _parts(root, pairs, req)


DIGITS = SourceKind(
    "digits_segmentation", "digits_segmentation", lambda s: s == "digits_segmentation",
    read_digits, path=False,
)  # fmt: skip
FOLDER = SourceKind("mask_folder", "a folder with images/ and masks/", is_mask_folder, read_folder)
MANIFEST = SourceKind(
    "mask_manifest", "a CSV manifest (image,mask)", is_mask_manifest, read_manifest
)
