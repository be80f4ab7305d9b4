"""Where training data comes from: digits, keras.datasets, .npz files and image folders."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from .images import IMAGE_EXTENSIONS, check_input_shape, convert, decode, find_corrupt

# Splits are a property of the data, not of the training run: one fixed seed.
SPLIT_SEED = 1234

_FASHION = [
    "t-shirt", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle_boot",
]  # fmt: skip
_CIFAR10 = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# name -> (keras.datasets module name, cache file under ~/.keras/datasets, class names)
KERAS_DATASETS: dict[str, tuple[str, str, list[str]]] = {
    "mnist": ("mnist", "mnist.npz", [str(i) for i in range(10)]),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist", _FASHION),
    "cifar10": ("cifar10", "cifar-10-batches-py", _CIFAR10),
    "cifar100": ("cifar100", "cifar-100-python", [str(i) for i in range(100)]),
}


@dataclass
class Data:
    """Unbatched, cached datasets of (float32 image in [0, 255], int32 label)."""

    train: Any
    val: Any
    test: Any
    class_names: list[str]
    sizes: dict[str, int] = field(default_factory=dict)
    source: str = ""
    files: list[str] = field(default_factory=list)  # image files of a folder source

    def diagnose(self, input_shape: Sequence[int]) -> None:
        """After a decode error mid-training: RunError naming the bad file (folder sources)."""
        find_corrupt(self.files, input_shape)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str):
        """The dataset of split ``name`` (train/val/test); RunError if the source lacks it."""
        ds = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if ds is None:
            raise RunError(f"data '{self.source}' has no {name} split")
        return ds


def load_data(
    source: str,
    input_shape: Sequence[int],
    *,
    seed: int = 0,
    validation_split: float = 0.15,
    test_split: float = 0.15,
    num_classes: int | None = None,
    cache: bool = True,
) -> Data:
    """Load ``source`` as train/val/test datasets converted to ``input_shape`` (see package doc).

    ``seed`` is accepted for API stability; splits use a fixed seed so that the test set never
    depends on the training seed.
    """
    del seed
    shape = check_input_shape(input_shape)
    loader = _array_source if _is_array_source(source) else _folder_source
    data = loader(source, shape, validation_split, test_split, cache)
    if num_classes is not None and num_classes != data.num_classes:
        raise RunError(
            f"data '{source}' has {data.num_classes} classes but the spec's final layer has "
            f"{num_classes} units",
            hint=f"set the last dense layer to {data.num_classes} units or use matching data",
        )
    if data.sizes.get("train", 0) == 0:
        raise RunError(f"data '{source}' has no training images")
    return data


def _is_array_source(source: str) -> bool:
    return source == "digits" or source in KERAS_DATASETS or source.endswith(".npz")


# --- arrays ------------------------------------------------------------------------------------


def _array_source(source, shape, validation_split, test_split, cache) -> Data:
    if source == "digits":
        x, y, names = _digits()
        splits = _split_arrays(x, y, validation_split, test_split)
    elif source in KERAS_DATASETS:
        (x, y), (x_test, y_test), names = _keras_dataset(source)
        train, val, _ = _split_arrays(x, y, validation_split, 0.0)
        splits = (train, val, (x_test, y_test))
    else:
        x, y, names = _npz(source)
        splits = _split_arrays(x, y, validation_split, test_split)
    datasets, sizes = {}, {}
    for name, part in zip(("train", "val", "test"), splits, strict=True):
        sizes[name] = 0 if part is None else len(part[1])
        datasets[name] = None if not sizes[name] else _from_arrays(*part, shape, cache)
    return Data(class_names=names, sizes=sizes, source=source, **datasets)


def _from_arrays(x: np.ndarray, y: np.ndarray, shape, cache: bool):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    # Convert in batches (vectorised resize), then unbatch: no Python per image.
    ds = ds.batch(256).map(lambda a, b: (convert(a, shape), b), num_parallel_calls=tf.data.AUTOTUNE)
    # unbatch() hides the size; tell tf.data (Keras then knows where an epoch ends).
    ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(y)))
    return ds.cache() if cache else ds


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


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 17 grey levels (0..16) -> [0, 255]
    x = (digits.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    return x, digits.target.astype(np.int32), [str(i) for i in range(10)]


def _npz(source: str):
    path = Path(source)
    if not path.is_file():
        raise RunError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz or "y" not in npz:
                raise RunError(f"{path} must hold arrays 'x' and 'y'; it holds {sorted(npz.files)}")
            x, y = npz["x"], npz["y"]
            names = [str(n) for n in npz["class_names"]] if "class_names" in npz else None
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise RunError(
            f"{path}: x must have shape (N, H, W) or (N, H, W, C) with C in 1, 3, 4; "
            f"received {x.shape}"
        )
    if y.ndim == 2:  # one-hot
        y = y.argmax(axis=1)
    if y.ndim != 1 or len(y) != len(x):
        raise RunError(f"{path}: y must have shape ({len(x)},); received {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise RunError(f"{path}: y must hold class indices 0..K-1; received dtype {y.dtype}")
    if np.issubdtype(x.dtype, np.floating) and len(x) and float(x.max()) <= 1.0:
        x = x * 255.0  # a [0, 1] float array; the pipeline contract is [0, 255]
    k = int(y.max()) + 1 if len(y) else 0
    names = names or [str(i) for i in range(k)]
    if len(names) < k:
        raise RunError(f"{path}: class_names has {len(names)} entries but y goes up to {k - 1}")
    return x, y.astype(np.int32), names


def _keras_dataset(name: str):
    import keras

    module, cache_name, names = KERAS_DATASETS[name]
    home = os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras"))
    cached = Path(home) / "datasets" / cache_name
    if not cached.exists() and not _online():
        raise RunError(
            f"cannot download dataset '{name}': no network connection",
            hint="connect once (it is cached in ~/.keras/datasets) or use data: digits",
        )
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)  # a stalled download fails instead of hanging
    try:
        (x, y), (x_test, y_test) = getattr(keras.datasets, module).load_data()
    except Exception as exc:  # noqa: BLE001 - network / archive errors of every kind
        raise RunError(
            f"cannot download dataset '{name}': {type(exc).__name__}: {exc}",
            hint="check the network connection or use data: digits",
        ) from None
    finally:
        socket.setdefaulttimeout(old)
    if x.ndim == 3:
        x, x_test = x[..., None], x_test[..., None]
    return (x, y.reshape(-1)), (x_test, y_test.reshape(-1)), names


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


# --- image folders -----------------------------------------------------------------------------


def _folder_source(source, shape, validation_split, test_split, cache) -> Data:
    root = Path(source)
    if not root.is_dir():
        hint = "use digits, mnist, fashion_mnist, cifar10, cifar100, a folder or an .npz file"
        raise RunError(f"data folder not found: {root}", hint=hint)
    sub = {p.name: p for p in root.iterdir() if p.is_dir()}
    if "train" in sub:
        names, train = _scan(sub["train"])
        val_dir = sub.get("val") or sub.get("validation")
        val = _scan(val_dir, names)[1] if val_dir else None
        test = _scan(sub["test"], names)[1] if "test" in sub else None
        if val is None:
            train, val, _ = _split_files(train, validation_split, 0.0)
    else:
        names, files = _scan(root)
        train, val, test = _split_files(files, validation_split, test_split)
    datasets, sizes, files = {}, {}, []
    for name, part in (("train", train), ("val", val), ("test", test)):
        sizes[name] = len(part or [])
        datasets[name] = _from_files(part, shape, cache) if part else None
        files += [f for f, _ in part or []]
    return Data(class_names=names, sizes=sizes, source=source, files=files, **datasets)


def _scan(folder: Path, names: list[str] | None = None) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sorted sub-folders) and (file, label) pairs of one class-folder tree."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise RunError(
            f"data folder {folder} has no class sub-folders",
            hint="put the images of each class in their own sub-folder (folder/cat/*.png, ...)",
        )
    if names is not None and classes != names:
        raise RunError(
            f"data folder {folder} has classes {classes} but the training folder has {names}"
        )
    files: list[tuple[str, int]] = []
    for label, cls in enumerate(classes):
        images = sorted(
            str(p)
            for p in (folder / cls).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not images:
            raise RunError(
                f"class folder {folder / cls} has no images",
                hint="add images (" + ", ".join(IMAGE_EXTENSIONS) + ") or remove the folder",
            )
        files += [(f, label) for f in images]
    return classes, files


def _split_files(files, validation_split, test_split):
    paths = np.array([f for f, _ in files], dtype=object)
    labels = np.array([label for _, label in files], dtype=np.int64)
    parts = _split_arrays(paths, labels, validation_split, test_split)
    return tuple(
        None if p is None else list(zip(p[0].tolist(), p[1].tolist(), strict=True)) for p in parts
    )


def _from_files(files: list[tuple[str, int]], shape, cache: bool):
    import tensorflow as tf

    paths = [f for f, _ in files]
    labels = np.array([label for _, label in files], dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(
        lambda p, y: (decode(tf.io.read_file(p), shape), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    if not cache:
        return ds
    ds = ds.cache()
    # Fill the cache now: a corrupt file fails here, where we can name it, and not in the
    # middle of an epoch. Later iterations read the cache (it is shared by every iterator).
    try:
        for _ in ds.batch(512).prefetch(2):
            pass
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        find_corrupt(paths, shape)
        raise
    return ds
