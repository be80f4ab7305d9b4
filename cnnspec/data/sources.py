"""Where training data comes from: digits, keras.datasets, .npz files and image folders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from . import cache as caches
from .arrays import KERAS_DATASETS, digits, keras_dataset, read_npz
from .images import check_input_shape, convert, decode, decode_random_crop, find_corrupt
from .pipeline import Reading
from .progress import progress
from .scan import class_folders, read_manifest, scan_classes

# Splits are a property of the data, not of the training run: one fixed seed.
SPLIT_SEED = 1234


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
class _Request:
    """What every loader needs besides the source."""

    shape: tuple[int, int, int]
    validation_split: float
    test_split: float
    cache: str
    seed: int
    crop: tuple[tuple[float, float], tuple[float, float]] | None
    echo: Callable[[str], None] | None
    num_classes: int | None = None

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
    req = _Request(shape, validation_split, test_split, mode, seed, crop, echo, num_classes)
    loader = _array_source if _is_array_source(source) else _file_source
    data = loader(source, req)
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


def _is_array_source(source: str) -> bool:
    return source == "digits" or source in KERAS_DATASETS or source.lower().endswith(".npz")


# --- arrays ------------------------------------------------------------------------------------


def _array_source(source: str, req: _Request) -> Data:
    notes: list[str] = []
    if source == "digits":
        x, y, names = digits()
        splits = _split_arrays(x, y, req.validation_split, req.test_split)
        identity = ["digits"]
    elif source in KERAS_DATASETS:
        (x, y), (x_test, y_test), names = keras_dataset(source)
        train, val, _ = _split_arrays(x, y, req.validation_split, 0.0)
        splits = (train, val, (x_test, y_test))
        identity = [source]
    else:
        x, y, names, scaling = read_npz(source)
        notes.append(scaling)
        splits = _split_arrays(x, y, req.validation_split, req.test_split)
        st = Path(source).stat()
        identity = [str(Path(source).resolve()), str(st.st_size), str(st.st_mtime_ns)]
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
    return Data(
        class_names=names, sizes=sizes, source=source, notes=notes, cache=choice.mode,
        readings=readings, **datasets,
    )  # fmt: skip


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def _from_arrays(x: np.ndarray, y: np.ndarray, shape):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    # Convert in batches (vectorised resize), then unbatch: no Python per image.
    ds = ds.batch(256).map(lambda a, b: (convert(a, shape), b), num_parallel_calls=tf.data.AUTOTUNE)
    # unbatch() hides the size; tell tf.data (Keras then knows where an epoch ends).
    return ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(y)))


def _split_arrays(x, y, validation_split, test_split):
    """Stratified, deterministic train/val/test split of arrays (None for an empty part)."""
    rng = np.random.default_rng(SPLIT_SEED)
    parts: list[list[int]] = [[], [], []]
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * test_split))
        n_val = int(round(len(idx) * validation_split))
        parts[2] += idx[:n_test].tolist()
        parts[1] += idx[n_test : n_test + n_val].tolist()
        parts[0] += idx[n_test + n_val :].tolist()
    out = []
    for part in parts:
        order = np.sort(np.asarray(part, dtype=np.int64))
        out.append((x[order], y[order]) if len(order) else None)
    return tuple(out)


# --- image folders and manifests ----------------------------------------------------------------

# Pseudo file systems are never data (and scanning them can hang or walk the whole machine).
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def _file_source(source: str, req: _Request) -> Data:
    root = Path(source)
    resolved = os.path.realpath(root)
    if any(resolved == r or resolved.startswith(r + "/") for r in _SYSTEM_ROOTS):
        raise RunError(
            f"data {source} is a system folder ({resolved}), not a data set",
            hint="use digits, an image folder, a CSV manifest or an .npz file",
        )
    if root.exists():
        # Scanned from the real path: ./photos and /abs/photos list the same file names (one
        # disk cache, and messages name absolute paths).
        root = Path(resolved)
    if root.is_file() and root.suffix.lower() == ".csv":
        with progress("scanning", None, unit="files", echo=req.echo) as bar:
            names, files = read_manifest(root)
            bar.advance(len(files))
        train, val, test = _split_files(files, req.validation_split, req.test_split)
    elif root.is_dir():
        with progress("scanning", None, unit="files", echo=req.echo) as bar:
            train, val, test, names = _scan_folder(root, req)
            bar.advance(sum(len(p or []) for p in (train, val, test)))
    elif root.exists():
        raise RunError(
            f"data {source} is neither a folder, a .csv manifest nor an .npz file",
            hint="use digits, an image folder, a CSV manifest (path,label) or an .npz file",
        )
    else:
        hint = (
            "use digits, mnist, fashion_mnist, cifar10, cifar100, a folder, a .csv or an .npz file"
        )
        raise RunError(f"data folder not found: {root}", hint=hint)
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
    datasets, sizes, all_files, readings = {}, {}, [], {}
    for name, part in parts.items():
        sizes[name] = len(part or [])
        if not part:
            datasets[name] = None
            continue
        paths = [f for f, _ in part]
        labels = np.fromiter((label for _, label in part), np.int32, len(part))
        all_files += paths
        streamed_train = name == "train" and choice.mode == "none"
        crop = req.crop if streamed_train else None
        ds = _from_files(paths, labels, req, shuffle=streamed_train, crop=crop)
        readings[name] = Reading(
            in_memory=choice.mode == "memory", shuffled=streamed_train, cropped=crop is not None
        )
        folder_key = caches.key(
            [str(Path(source).resolve()), _dims(req.shape), name], paths, labels
        )
        info = {"source": str(Path(source).resolve()), "split": name, "input": list(req.shape)}
        datasets[name] = caches.apply(
            ds, choice, name=name, count=sizes[name], folder_key=folder_key, info=info,
            on_error=lambda n, paths=paths: _name_corrupt(paths, n, req.shape), echo=req.echo,
        )  # fmt: skip
    return Data(
        class_names=names, sizes=sizes, source=source, files=all_files,
        notes=[choice.describe()], cache=choice.mode, readings=readings, **datasets,
    )  # fmt: skip


_SPLIT_FOLDERS = ("train", "val", "validation", "test")


def _scan_folder(root: Path, req: _Request):
    sub = class_folders(root)
    if "train" in sub:
        others = [s for s in sub if s not in _SPLIT_FOLDERS]
        if others:
            raise RunError(
                f"data folder {root} holds train/ beside the class folders {others}: a folder "
                "with train/ is read as split folders (train/ [val/] [test/], each holding "
                "class folders)",
                hint="rename a class called 'train', or move the class folders into train/",
            )
        names, train = scan_classes(root / "train", root=root)
        val_name = "val" if "val" in sub else "validation" if "validation" in sub else None
        val = scan_classes(root / val_name, names, root)[1] if val_name else None
        test = scan_classes(root / "test", names, root)[1] if "test" in sub else None
        if val is None:
            train, val, _ = _split_files(train, req.validation_split, 0.0)
    else:
        names, files = scan_classes(root)
        train, val, test = _split_files(files, req.validation_split, req.test_split)
    return train, val, test, names


def _split_files(files, validation_split, test_split):
    paths = np.array([f for f, _ in files], dtype=object)
    labels = np.array([label for _, label in files], dtype=np.int64)
    parts = _split_arrays(paths, labels, validation_split, test_split)
    return tuple(
        None if p is None else list(zip(p[0].tolist(), p[1].tolist(), strict=True)) for p in parts
    )


def _from_files(paths: list[str], labels: np.ndarray, req: _Request, *, shuffle: bool, crop):
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
