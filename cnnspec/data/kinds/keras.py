"""keras.datasets (downloaded once into ~/.keras/datasets; their own test split is kept)."""

from __future__ import annotations

from ..registry import ArrayParts, SourceKind

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


def read(source: str, req) -> ArrayParts:
    from ..arrays import keras_dataset
    from ..splits import split_arrays

    (x, y), test, names = keras_dataset(source)
    train, val, _ = split_arrays(x, y, req.validation_split, 0.0)
    return ArrayParts((train, val, test), names, [source])


KIND = SourceKind(
    "keras", ", ".join(KERAS_DATASETS), lambda s: s in KERAS_DATASETS, read, path=False
)
