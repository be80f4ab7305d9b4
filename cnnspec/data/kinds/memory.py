"""Data already in memory, given in Python (``cnnspec.train(spec, data=...)``): arrays
``(x, y)``, a ``tf.data.Dataset`` of (image, label) (batched or not) or a Keras ``PyDataset``.
A label may be a table row named by a mapping ``{column: value}`` (or a DataFrame's batch), as
``y`` may be for arrays: its columns are those a task reads.

Arrays pass the same checks and the same split as an ``.npz`` file holding them (so training
on them equals ``cnnspec train --data file.npz``, bit for bit). A dataset is read once into
arrays: memory that grows with the data, so it is bounded like an ``.npz`` (at most half of
this machine's memory, checked from its size before reading when the size is known); larger
data belongs in an image folder or a CSV manifest, which stream.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import RunError
from ..arrays import check_arrays
from ..masks import array_masks, shapes_are_masks
from ..registry import ArrayParts, SourceKind
from ..splits import split_arrays
from ..tables import array_table

LARGER = "use an image folder or a CSV manifest, which stream, for data this large"


def _tf_dataset(source: Any) -> bool:
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset exists only once TF is imported
    return tf is not None and isinstance(source, tf.data.Dataset)


def _py_dataset(source: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(source, keras.utils.PyDataset)


def _pair(source: Any) -> bool:
    return isinstance(source, tuple | list) and len(source) == 2


def matches(source: Any) -> bool:
    return not isinstance(source, str) and (
        _pair(source) or _tf_dataset(source) or _py_dataset(source)
    )


def label(source: Any) -> str:
    """How messages and the run's metadata name the data."""
    if _pair(source):
        shape = getattr(source[0], "shape", None)
        size = f" of {'x'.join(map(str, shape))}" if shape is not None else ""
        return f"arrays (x, y){size} in memory"
    return f"a {'tf.data.Dataset' if _tf_dataset(source) else type(source).__name__} in memory"


def budget() -> int:
    from ..cache import total_memory

    return total_memory() // 2


class Collector:
    """Batches of (x, y) read from a dataset, within the memory budget. A label that names its
    columns (``{column: values}``, a DataFrame) is kept as a table row with those names, which
    every element must share."""

    def __init__(self, what: str, limit: int) -> None:
        self.what, self.limit, self.nbytes = what, limit, 0
        self.xs: list[np.ndarray] = []
        self.ys: list[np.ndarray] = []
        self.columns: list[str] | None = None

    def add(self, element: Any, batched: bool) -> None:
        if not isinstance(element, tuple | list) or len(element) != 2:
            kind = type(element).__name__
            size = f" of {len(element)}" if isinstance(element, tuple | list) else ""
            raise RunError(
                f"{self.what}: each element must be (image, label), received a {kind}{size}",
                hint="map it to (x, y) pairs, e.g. ds.map(lambda x, y, w: (x, y))",
            )
        x, label = np.asarray(element[0]), element[1]
        if isinstance(label, Mapping) and not batched:  # one image's row: a value per column
            label = {k: np.asarray(v).reshape(1, -1) for k, v in label.items()}
        y, columns = labels_of(label, self.what)
        if not batched:
            x = x[None]
            y = y if columns is not None else y[None]
        if self.xs and columns != self.columns:
            raise RunError(
                f"{self.what}: an element's label columns are {_named(columns)}, those before "
                f"it {_named(self.columns)}",
                hint="give every element the same label columns",
            )
        self.columns = columns
        self.nbytes += x.nbytes + y.nbytes
        if self.nbytes > self.limit:
            raise RunError(
                f"{self.what} holds more than {self.limit / 2**30:.1f} GiB, half of this "
                "machine's memory, and is read whole into memory",
                hint=LARGER,
            )
        self.xs.append(x)
        self.ys.append(y)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
        if not self.xs:
            raise RunError(f"{self.what} holds no images")
        return np.concatenate(self.xs), np.concatenate(self.ys), self.columns


def _named(columns: list[str] | None) -> str:
    return ", ".join(columns) if columns is not None else "unnamed (an array)"


def from_tf_dataset(ds: Any, rank: int, limit: int) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(x, y, y's column names or None) of every element; ``rank``: of one image as the spec
    takes it (H, W, C -> 3)."""
    import tensorflow as tf

    what = "data=<tf.data.Dataset>"
    n = int(ds.cardinality())
    if n == int(tf.data.INFINITE_CARDINALITY):
        raise RunError(f"{what} is infinite (repeat()), so it cannot be read whole", hint=(
            "pass the dataset without .repeat(): training repeats it by the recipe's epochs"
        ))  # fmt: skip
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise RunError(
            f"{what}: its elements must be (image, label), received {spec}",
            hint="map it to (x, y) pairs",
        )
    shape = spec[0].shape
    batched = shape.rank == rank + 1 or (shape.rank == rank and shape[0] is None)
    if n > 0 and shape.is_fully_defined():  # refused from its size, before anything is read
        per = int(np.prod(shape)) * spec[0].dtype.size
        if n * per > limit:
            raise RunError(
                f"{what} holds {n * per / 2**30:.1f} GiB, more than half of this machine's "
                "memory, and is read whole into memory",
                hint=LARGER,
            )
    got = Collector(what, limit)
    for element in ds.as_numpy_iterator():
        got.add(element, batched)
    return got.arrays()


def from_py_dataset(ds: Any, limit: int) -> tuple[np.ndarray, np.ndarray, list | None]:
    """(x, y, y's column names or None) of every batch of a Keras PyDataset (``len(ds)``
    batches, ``ds[i]`` each)."""
    what = f"data=<{type(ds).__name__}>"
    got = Collector(what, limit)
    for i in range(len(ds)):
        got.add(ds[i], batched=True)
    return got.arrays()


def labels_of(y: Any, what: str) -> tuple[np.ndarray, list[str] | None]:
    """``y`` as an array, and its column names when ``y`` names them: a mapping
    ``{column: values}`` (one value, or one row of values, per image) or a table with
    ``.columns`` and ``.to_numpy()`` (a pandas DataFrame). Unnamed, a label table's columns are
    0..K-1, as in an .npz without ``columns``."""
    if isinstance(y, Mapping):
        if not y:
            raise RunError(f"{what}: y is an empty mapping", hint="map column names to values")
        cols = {str(k): np.asarray(v) for k, v in y.items()}
        sizes = {k: (len(v) if v.ndim else 0) for k, v in cols.items()}
        bad = [k for k, v in cols.items() if v.ndim == 0 or v.size != sizes[k]]
        if bad or len(set(sizes.values())) != 1:
            shapes = ", ".join(f"{k}: {v.shape}" for k, v in cols.items())
            raise RunError(
                f"{what}: y's columns must each hold one value per image, all of one length; "
                f"received {shapes}"
            )
        return np.stack([v.reshape(-1) for v in cols.values()], axis=1), list(cols)
    columns = getattr(y, "columns", None)
    if columns is not None and callable(getattr(y, "to_numpy", None)):
        return np.asarray(y.to_numpy()), [str(c) for c in columns]
    return np.asarray(y), None


def read(source: Any, req) -> ArrayParts | Any:
    limit = budget()
    if _tf_dataset(source):
        x, y, columns = from_tf_dataset(source, len(req.shape), limit)
        what = "data=<tf.data.Dataset>"
    elif _py_dataset(source):
        x, y, columns = from_py_dataset(source, limit)
        what = f"data=<{type(source).__name__}>"
    else:
        what = "data=(x, y)"
        x, (y, columns) = np.asarray(source[0]), labels_of(source[1], what)
        if x.nbytes > limit:
            raise RunError(f"{what}: x holds {x.nbytes / 2**30:.1f} GiB", hint=LARGER)
    if shapes_are_masks(x.shape, y.shape):  # a mask per image (segmentation)
        return array_masks(x, y, None, req, what, ["memory", _digest(x, y), "masks"])
    if req.table:  # a label table: k-hot rows, target vectors, named columns
        x, table, names, scaling = array_table(x, y, columns, what)
        splits = split_arrays(x, table, req.validation_split, req.test_split)
        identity = ["memory", _digest(x, table, names), "table"]
        return ArrayParts(splits, names, identity, [scaling], columns=list(names))
    if columns is not None and len(columns) != 1:
        raise RunError(
            f"{what}: y names the label columns {', '.join(columns)}, but this spec "
            "learns one class index per image",
            hint="pass y as an array of class indices, or give the spec a task or heads "
            "that read those columns",
        )
    if y.ndim == 2 and y.shape[1] == 1 and y.shape[0] > 1:  # (N, 1) indices, not one-hot
        y = y[:, 0]
    x, y, names, scaling = check_arrays(x, y, None, what)
    splits = split_arrays(x, y, req.validation_split, req.test_split)
    return ArrayParts(splits, names, ["memory", _digest(x, y)], [scaling])


def _digest(*parts: Any) -> str:
    """A disk cache's key: the content itself (arrays, and column names)."""
    digest = hashlib.blake2b(digest_size=16)
    for a in parts:
        if isinstance(a, np.ndarray):
            digest.update(str((a.dtype.str, a.shape)).encode())
            digest.update(np.ascontiguousarray(a).data)
        else:
            digest.update(repr(a).encode())
    return digest.hexdigest()


KIND = SourceKind(
    "memory",
    "(in Python) arrays (x, y), a tf.data.Dataset or a Keras PyDataset",
    matches,
    read,
    path=False,
    objects=True,
    label=label,
)
