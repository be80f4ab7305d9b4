"""Images with a mask each (segmentation): read, checked, resized and cached beside the images.

A mask is (H, W) class indices, **255 = ignore**: a single-channel or palette PNG (its palette
indices, never its colours), or a row of an ``.npz``'s ``y`` (N, H, W). Masks are resized to
the spec's input with nearest neighbour only (a class index is never blended), held as uint8
(N, H, W) — a mask is a third of an RGB image's bytes — and cached with the images (memory or
disk, as ``cache.py`` chooses). ``MaskParts`` is what the mask source kinds return
(``kinds/segmentation.py``); ``to_data`` (registered here) makes the cached splits.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from . import cache as caches
from .pipeline import Reading
from .sources import Data, Request, to_data

IGNORE = 255


@dataclass
class MaskParts:
    """Per split (None when absent): (images, masks). Images are an array (N, H, W[, C]) in
    [0, 255] or a list of image paths; masks uint8 (N, H, W) at the spec's input size."""

    splits: tuple[Any, Any, Any]
    names: list[str]  # class names, index = class
    identity: list[str]  # what determines the content (a disk cache's key)
    notes: list[str] = field(default_factory=list)


# --- masks as arrays -------------------------------------------------------------------------------


def resize_nearest(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, h, w) -> (N, height, width) by nearest neighbour (pixel centres), uint8."""
    n, h, w = masks.shape
    if (h, w) == (height, width):
        return masks.astype(np.uint8, copy=False)
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return masks[:, rows][:, :, cols].astype(np.uint8)


def check_masks(masks: np.ndarray, where: str) -> int:
    """The largest class index of ``masks`` (255 = ignore left out); RunError for values that
    are not class indices."""
    if masks.dtype.kind == "f":
        if not np.all(np.isfinite(masks)) or not np.all(np.mod(masks, 1) == 0):
            raise RunError(
                f"{where}: masks must hold integer class indices; received {masks.dtype} values",
                hint="class indices 0..K-1 per pixel, 255 = ignore",
            )
    elif masks.dtype.kind not in "iub":
        raise RunError(f"{where}: masks must hold class indices; received dtype {masks.dtype}")
    bad = (masks < 0) | ((masks > 254) & (masks != IGNORE))
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), masks.shape)
        raise RunError(
            f"{where}: mask value {masks[index].item()!r} at {tuple(int(i) for i in index)} is "
            "not a class index (0..254) or 255 (ignore)",
            hint="a mask holds class indices 0..K-1 per pixel, 255 = ignore",
        )
    kept = masks[masks != IGNORE]
    return int(kept.max()) if kept.size else 0


def default_names(top: int, names: list[str] | None = None) -> list[str]:
    names = list(names or [])
    return names + [str(i) for i in range(len(names), top + 1)]


# --- masks as files ----------------------------------------------------------------------------------


def read_mask_file(path: str, height: int, width: int) -> np.ndarray:
    """A mask file's class indices (H, W) at (height, width), nearest neighbour; RunError
    naming the file when it is unreadable or not class indices (a colour image)."""
    from PIL import Image, UnidentifiedImageError

    from .images import check_image_pixels

    check_image_pixels(path)
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode in ("P", "L", "1", "I", "I;16"):
                values = np.asarray(img)
            elif mode in ("LA", "PA"):
                values = np.asarray(img)[..., 0]
            elif mode in ("RGB", "RGBA"):
                rgb = np.asarray(img)[..., :3]
                if not (np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2])):
                    raise RunError(
                        f"{path}: a mask must be a single-channel or palette PNG of class "
                        f"indices; this one is a colour ({mode}) image",
                        hint="save each mask as mode L (grey values = class indices) or P "
                        "(palette indices = class indices)",
                    )
                values = rgb[..., 0]
            else:
                raise RunError(f"{path}: a mask image of mode {mode} is not class indices")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise RunError(f"{path}: cannot read the mask: {exc}") from None
    values = np.asarray(values).astype(np.int64)
    check_masks(values, path)
    return resize_nearest(values[None], height, width)[0]


def read_mask_files(paths: list[str], height: int, width: int, echo=None) -> np.ndarray:
    """(N, height, width) uint8 masks of ``paths`` (a few threads: PIL releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from .progress import progress

    out = np.empty((len(paths), height, width), np.uint8)
    workers = min(8, os.cpu_count() or 1)
    with (
        progress("reading masks", len(paths), echo=echo) as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        for i, mask in enumerate(pool.map(lambda p: read_mask_file(p, height, width), paths)):
            out[i] = mask
            bar.advance(1)
    return out


def class_names_file(root: Path) -> list[str] | None:
    """Class names from ``classes.txt`` beside the data (one per line, index = line), if any."""
    path = root / "classes.txt"
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [n for n in names if n] or None


# --- .npz with masks -----------------------------------------------------------------------------------


def npz_has_masks(path: str) -> bool:
    """Whether an .npz's ``y`` is (N, H, W) beside an ``x`` of (N, H, W[, C]): read from the
    array headers only (nothing is decompressed)."""
    try:
        with zipfile.ZipFile(path) as zf:
            shapes = {}
            for key in ("x", "y"):
                with zf.open(f"{key}.npy") as fh:
                    fmt = np.lib.format
                    version = fmt.read_magic(fh)
                    header = (
                        fmt.read_array_header_1_0
                        if version == (1, 0)
                        else fmt.read_array_header_2_0
                    )
                    shapes[key] = header(fh)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return False
    return shapes_are_masks(shapes["x"], shapes["y"])


def read_npz(source: str, req: Request) -> MaskParts:
    """An .npz with x (N, H, W[, C]) and y (N, H, W) masks (optional class_names)."""
    from .arrays import check_npz_archive

    path = Path(source)
    check_npz_archive(path)
    with np.load(path, allow_pickle=False) as npz:
        x, y = npz["x"], npz["y"]
        names = [str(n) for n in npz["class_names"]] if "class_names" in npz else None
    st = path.stat()
    identity = [str(path.resolve()), str(st.st_size), str(st.st_mtime_ns), "masks"]
    return array_masks(x, y, names, req, str(path), identity)


def shapes_are_masks(x: Any, y: Any) -> bool:
    """Whether a ``y`` of shape ``y`` is (N, H, W) beside an ``x`` of shape (N, H, W[, C]):
    a mask per image (an .npz's arrays, or arrays given in Python)."""
    x, y = tuple(x), tuple(y)
    return len(y) == 3 and len(x) in (3, 4) and x[:3] == y


def array_masks(x, y, names, req: Request, what: str, identity: list[str]) -> MaskParts:
    """Images x (N, H, W[, C]) and masks y (N, H, W) of class indices (255: ignore), from an
    .npz or arrays given in Python (named ``what``), resized to the spec's input and split."""
    from .arrays import check_arrays
    from .splits import split_arrays

    top = check_masks(y, f"{what}: y")
    x, _, _, scaling = check_arrays(x, np.zeros(len(x), np.int32), None, what)
    h, w = req.shape[:2]
    masks = resize_nearest(y, h, w)
    index = np.arange(len(x))
    splits = tuple(
        None if p is None else (x[p[0]], masks[p[0]])
        for p in split_arrays(
            index, np.zeros(len(x), np.int32), req.validation_split, req.test_split
        )
    )
    return MaskParts(splits, default_names(top, names), identity, [scaling])


# --- cached splits ---------------------------------------------------------------------------------------


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


@to_data.register
def _(parts: MaskParts, source: str, req: Request) -> Data:
    import tensorflow as tf

    from .images import convert, decode

    shape = req.shape
    present = [p for p in parts.splits if p is not None]
    files = bool(present) and isinstance(present[0][0], list)
    itemsize = 1 if files or present[0][0].dtype == np.uint8 else 4
    count = sum(len(p[1]) for p in present)
    per = int(np.prod(shape)) * itemsize + shape[0] * shape[1]
    what = f"{'uint8' if itemsize == 1 else 'float32'} images and uint8 masks at {_dims(shape)}"
    choice = caches.choose(req.cache, count * per, what)
    notes = [choice.describe(), *parts.notes]
    for line in notes:
        req.say(line)
    datasets, sizes, readings, all_files = {}, {}, {}, []
    for name, part in zip(("train", "val", "test"), parts.splits, strict=True):
        sizes[name] = 0 if part is None else len(part[1])
        if not sizes[name]:
            datasets[name] = None
            continue
        images, masks = part
        if files:
            all_files += images
            ds = tf.data.Dataset.from_tensor_slices((tf.constant(images, tf.string), masks))
            ds = ds.map(lambda p, m: (decode(tf.io.read_file(p), shape), m),
                        num_parallel_calls=tf.data.AUTOTUNE)  # fmt: skip
        else:
            ds = tf.data.Dataset.from_tensor_slices((images, masks)).batch(256)
            ds = ds.map(lambda a, m: (convert(a, shape), m), num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.unbatch()
        ds = ds.apply(tf.data.experimental.assert_cardinality(sizes[name]))
        digest = hashlib.sha256(np.ascontiguousarray(masks).tobytes()).hexdigest()
        folder_key = caches.key(
            [*parts.identity, _dims(shape), name, str(sizes[name]), digest],
            images if files else (),
        )
        info = {"source": source, "split": name, "input": list(shape)}
        datasets[name] = caches.apply(
            ds, choice, name=name, count=sizes[name], folder_key=folder_key, info=info,
            on_error=_name_corrupt(images, shape) if files else (lambda n: None), echo=req.echo,
        )  # fmt: skip
        readings[name] = Reading(in_memory=choice.mode == "memory")
    return Data(
        class_names=list(parts.names), sizes=sizes, source=source, files=all_files, notes=notes,
        cache=choice.mode, readings=readings, masks=True, **datasets,
    )  # fmt: skip


def _name_corrupt(paths: list[str], shape):
    from .images import find_corrupt

    def named(done: int) -> None:
        find_corrupt(paths[done : done + 1024], shape)
        find_corrupt(paths, shape)

    return named
