"""Training data as cached tf.data splits: ``load_data`` finds the source's kind in the
registry (``registry.py``, one module per kind under ``kinds/``), lets it read arrays or a file
list, and turns that into splits cached as ``cache.py`` chooses."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any

import numpy as np

from ..errors import RunError
from . import cache as caches
from . import registry
from .images import check_input_shape, convert, decode, decode_random_crop, find_corrupt
from .pipeline import Reading
from .registry import ArrayParts, FileParts
from .splits import SPLIT_SEED


@dataclass
class Data:
    """Unbatched datasets of (image, int32 label), cached as ``cache`` chose.

    Images are uint8 in [0, 255] (image folders, manifests, uint8 arrays) or float32 in
    [0, 255] (float arrays such as digits); ``make_pipeline`` casts batches to float32.
    """

    train: Any
    val: Any
    test: Any
    class_names: list[str]
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = ""
    files: list[str] = field(default_factory=list)  # image files of a folder source
    notes: list[str] = field(default_factory=list)  # how the data is read: cache, scaling
    cache: str = "none"  # the cache mode chosen: memory | disk | none
    readings: dict[str, Reading] = field(default_factory=dict)  # how each split is read
    # A label table (cnnspec/data/tables.py): labels are float32 rows with these columns, and
    # the training split's rows are kept (statistics, label checks); else labels are int32.
    columns: list[str] = field(default_factory=list)
    label_table: Any = None
    column_classes: dict[str, list[str]] = field(default_factory=dict)
    masks: bool = False  # labels are a uint8 mask per image, 255 = ignore (data/masks.py)

    def reading(self, name: str) -> Reading:
        """How split ``name`` is read, for ``make_pipeline(..., reading=...)``."""
        return self.readings.get(name, Reading())

    def diagnose(self, input_shape: Sequence[int]) -> None:
        """After a decode error mid-training: RunError naming the bad file (folder sources)."""
        find_corrupt(self.files, input_shape)

    def read_failure(self, exc: Exception, input_shape: Sequence[int], what: str) -> RunError:
        """The error for a TensorFlow decode failure while streaming: RunError naming the bad
        file when it is a folder source (raised from here), else ``what: <first line>``."""
        self.diagnose(input_shape)
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return RunError(f"{what}: {first}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str):
        """The dataset of split ``name`` (train/val/test); RunError if the source lacks it."""
        ds = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if ds is None:
            raise RunError(f"data '{self.source}' has no {name} split")
        return ds


@dataclass(frozen=True)
class Request:
    """What every loader needs besides the source."""

    shape: tuple[int, int, int]
    validation_split: float
    test_split: float
    cache: str
    seed: int
    crop: tuple[tuple[float, float], tuple[float, float]] | None
    echo: Callable[[str], None] | None
    num_classes: int | None = None
    table: bool = False  # labels are a table (multilabel, regression, label columns)

    def say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)

    def check_classes(self, source: str, names: Sequence[str]) -> None:
        """Before any decoding or caching: the data's classes against the spec's."""
        if self.num_classes is not None and self.num_classes != len(names):
            raise RunError(
                f"data '{source}' has {len(names)} classes but the spec's final layer has "
                f"{self.num_classes} units",
                hint=f"set the last dense layer to {len(names)} units or use matching data",
            )


def load_data(
    source: str,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    num_classes: int | None = None,
    cache: str | bool = "auto",
    crop: tuple[tuple[float, float], tuple[float, float]] | None = None,
    echo: Callable[[str], None] | None = None,
    table: bool = False,
) -> Data:
    """Load ``source`` as train/val/test datasets converted to ``input_shape`` (see package doc).

    Splits use a fixed seed, so the test set never depends on the training seed; ``seed``
    shuffles the file order of a streamed (uncached) training split every epoch and seeds
    ``crop``. ``cache``: auto | memory | disk | none (True = auto, False = none).
    ``crop``: ((min, max) area, (min, max) aspect ratio) of a random resized crop done while
    decoding the streamed training split (fused JPEG decode-and-crop); ignored when cached.
    ``echo`` receives the lines that say how the data is read (cache choice, pixel scaling)
    and the progress summaries.
    """
    shape = check_input_shape(input_shape)
    mode = {True: "auto", False: "none"}.get(cache, cache) if isinstance(cache, bool) else cache
    req = Request(shape, validation_split, test_split, mode, seed, crop, echo, num_classes, table)
    kind = registry.find(source)
    parts = kind.read(source, req)
    source = kind.label(source)  # arrays in memory: a short description, not their repr
    data = to_data(parts, source, req)
    if data.sizes.get("train", 0) == 0:
        raise RunError(f"data '{source}' has no training images")
    return data


CROP_DEFAULTS = ((0.08, 1.0), (3 / 4, 4 / 3))  # Inception / ImageNet recipes


def decode_crop(augment: Sequence[Any]):
    """The (area, aspect ratio) ranges of a ``random_resized_crop`` in ``augment``, or None.

    Passed to :func:`load_data` as ``crop``: a streamed training split then crops while it
    decodes (fused JPEG decode-and-crop) and ``make_pipeline`` skips that augmentation.
    """
    for a in augment:
        if getattr(a, "kind", None) != "random_resized_crop":
            continue
        params = a.params
        get = params.get if isinstance(params, dict) else (lambda k, d, p=params: getattr(p, k, d))
        scale = get("scale", None) or CROP_DEFAULTS[0]
        ratio = get("ratio", None) or CROP_DEFAULTS[1]
        return (tuple(float(v) for v in scale), tuple(float(v) for v in ratio))
    return None


# --- arrays ------------------------------------------------------------------------------------


@singledispatch
def to_data(parts, source: str, req: Request) -> Data:
    """Cached tf.data splits of what a source kind read (ArrayParts or FileParts)."""
    raise TypeError(f"a source kind returned {type(parts).__name__}")


@to_data.register
def _(parts: ArrayParts, source: str, req: Request) -> Data:
    splits, names, identity, notes = parts.splits, parts.names, parts.identity, list(parts.notes)
    x = next(p[0] for p in splits if p is not None)
    if not parts.columns:  # a label table's columns are checked per output (cnnspec.tasks)
        req.check_classes(source, names)
    itemsize = 1 if x.dtype == np.uint8 else 4
    count = sum(len(p[1]) for p in splits if p is not None)
    what = f"{'uint8' if itemsize == 1 else 'float32'} images at {_dims(req.shape)}"
    choice = caches.choose(req.cache, count * int(np.prod(req.shape)) * itemsize, what)
    notes.insert(0, choice.describe())
    for line in notes:
        req.say(line)
    datasets, sizes = {}, {}
    for name, part in zip(("train", "val", "test"), splits, strict=True):
        sizes[name] = 0 if part is None else len(part[1])
        if not sizes[name]:
            datasets[name] = None
            continue
        ds = _from_arrays(*part, req.shape)
        folder_key = caches.key([*identity, _dims(req.shape), name, str(sizes[name])])
        info = {"source": source, "split": name, "input": list(req.shape)}
        datasets[name] = caches.apply(
            ds, choice, name=name, count=sizes[name], folder_key=folder_key, info=info,
            on_error=lambda n: None, echo=req.echo,
        )  # fmt: skip
    readings = {name: Reading(in_memory=choice.mode == "memory") for name in datasets}
    table = splits[0][1] if parts.columns and splits[0] is not None else None
    return Data(
        class_names=names, sizes=sizes, source=source, notes=notes, cache=choice.mode,
        readings=readings, columns=list(parts.columns), label_table=table,
        column_classes=dict(parts.column_classes), **datasets,
    )  # fmt: skip


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def _from_arrays(x: np.ndarray, y: np.ndarray, shape):
    import tensorflow as tf

    labels = y.astype(np.int32) if y.ndim == 1 else y.astype(np.float32)  # a label table
    ds = tf.data.Dataset.from_tensor_slices((x, labels))
    # Convert in batches (vectorised resize), then unbatch: no Python per image.
    ds = ds.batch(256).map(lambda a, b: (convert(a, shape), b), num_parallel_calls=tf.data.AUTOTUNE)
    # unbatch() hides the size; tell tf.data (Keras then knows where an epoch ends).
    return ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(y)))


# --- image folders and manifests ----------------------------------------------------------------


@to_data.register
def _(parts: FileParts, source: str, req: Request) -> Data:
    train, val, test, names, root = parts.train, parts.val, parts.test, parts.names, parts.root
    columns = list(parts.columns)
    if not columns:  # a label table's columns are checked per output (cnnspec.tasks)
        req.check_classes(source, names)
    if train:
        # Once, with the split seed: a cache holds the training images in a random order (not
        # class by class), so a bounded shuffle buffer mixes them well.
        order = np.random.default_rng(SPLIT_SEED).permutation(len(train))
        train = [train[i] for i in order]
    parts = {"train": train, "val": val, "test": test}
    count = sum(len(p or []) for p in parts.values())
    what = f"uint8 images at {_dims(req.shape)}"
    choice = caches.choose(req.cache, count * int(np.prod(req.shape)), what)
    req.say(choice.describe())
    datasets, sizes, all_files, readings, tables = {}, {}, [], {}, {}
    for name, part in parts.items():
        sizes[name] = len(part or [])
        if not part:
            datasets[name] = None
            continue
        paths = [f for f, _ in part]
        labels = (
            np.stack([np.asarray(label, np.float32) for _, label in part])
            if columns
            else np.fromiter((label for _, label in part), np.int32, len(part))
        )
        tables[name] = labels
        all_files += paths
        streamed_train = name == "train" and choice.mode == "none"
        crop = req.crop if streamed_train else None
        ds = _from_files(paths, labels, req, shuffle=streamed_train, crop=crop)
        readings[name] = Reading(
            in_memory=choice.mode == "memory", shuffled=streamed_train, cropped=crop is not None
        )
        if columns:  # the label rows are part of what a cache holds
            digest = hashlib.sha256(labels.tobytes()).hexdigest()
            folder_key = caches.key([root, _dims(req.shape), name, *columns, digest], paths)
        else:
            folder_key = caches.key([root, _dims(req.shape), name], paths, labels)
        info = {"source": root, "split": name, "input": list(req.shape)}
        datasets[name] = caches.apply(
            ds, choice, name=name, count=sizes[name], folder_key=folder_key, info=info,
            on_error=lambda n, paths=paths: _name_corrupt(paths, n, req.shape), echo=req.echo,
        )  # fmt: skip
    return Data(
        class_names=names, sizes=sizes, source=source, files=all_files,
        notes=[choice.describe()], cache=choice.mode, readings=readings, columns=columns,
        label_table=tables.get("train") if columns else None, **datasets,
    )  # fmt: skip


def _from_files(paths: list[str], labels: np.ndarray, req: Request, *, shuffle: bool, crop):
    """(uint8 image, label) decoded from files; ``shuffle``: a new file order every epoch."""
    import tensorflow as tf

    # One string tensor: a Python list would be inspected element by element (10 s per 1 M).
    try:
        names = tf.constant(paths, tf.string)
    except ValueError:  # a file name that is not UTF-8 (surrogate-escaped): its raw bytes
        names = tf.constant([os.fsencode(p) for p in paths], tf.string)
    ds = tf.data.Dataset.from_tensor_slices((names, labels))
    if shuffle:  # paths are cheap to shuffle: the whole split, not a buffer of images
        ds = ds.shuffle(len(paths), seed=req.seed, reshuffle_each_iteration=True)
    shape = req.shape
    if crop is None:
        ds = ds.map(
            lambda p, y: (decode(tf.io.read_file(p), shape), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        scale, ratio = crop
        seeds = tf.data.Dataset.random(seed=req.seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda py, s: (
                decode_random_crop(tf.io.read_file(py[0]), shape, s, scale, ratio),
                py[1],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.apply(tf.data.experimental.assert_cardinality(len(paths)))


def _name_corrupt(paths: list[str], done: int, shape) -> None:
    """RunError naming the file that failed after ``done`` good ones (look near it first)."""
    find_corrupt(paths[done : done + 1024], shape)
    find_corrupt(paths, shape)
