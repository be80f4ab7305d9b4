"""Digit subsets for transfer experiments (scikit-learn's bundled digits, no download).

``python -m cnnspec.transfer.digits OUT_DIR`` writes ``digits04.npz`` (digits 0-4, to
pretrain a backbone) and ``digits59.npz`` (digits 5-9, labels 0-4, class names "5".."9"):
the data of ``specs/transfer_digits04_pretrain.yaml`` and ``specs/transfer_digits59.yaml``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def digits_subset(classes: list[int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images (N, 8, 8, 1) in [0, 255] and labels 0..len(classes)-1 of the given digits."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, classes)
    x = (digits.images[keep].astype(np.float32) * (255.0 / 16.0))[..., None]
    remap = {c: i for i, c in enumerate(classes)}
    y = np.array([remap[int(t)] for t in digits.target[keep]], dtype=np.int32)
    return x, y, [str(c) for c in classes]


def few_labels(y: np.ndarray, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``per_class`` examples of every class, and of all the others (held out)."""
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    )
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    return np.sort(chosen), rest


def write_npz(path: str | Path, classes: list[int]) -> Path:
    """An .npz data source (x, y, class_names) of the given digits."""
    x, y, names = digits_subset(classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, x=x, y=y, class_names=np.array(names))
    return path


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "data")
    for name, classes in (("digits04", [0, 1, 2, 3, 4]), ("digits59", [5, 6, 7, 8, 9])):
        print(write_npz(out / f"{name}.npz", classes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
