"""keras.datasets (downloaded once into ~/.keras/datasets; their own test split is kept)."""

from __future__ import annotations

from ..arrays import KERAS_DATASETS, keras_dataset
from ..registry import ArrayParts, SourceKind
from ..splits import split_arrays


def read(source: str, req) -> ArrayParts:
    (x, y), test, names = keras_dataset(source)
    train, val, _ = split_arrays(x, y, req.validation_split, 0.0)
    return ArrayParts((train, val, test), names, [source])


KIND = SourceKind(
    "keras", ", ".join(KERAS_DATASETS), lambda s: s in KERAS_DATASETS, read, path=False
)
