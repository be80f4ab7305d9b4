"""Digits on a canvas: label tables made from scikit-learn's digits in memory, no download.

- ``digits_multilabel``: 2 to 4 different digits in the quadrants of a 32x32 canvas; labels
  are the set present (k-hot columns ``0`` .. ``9``): the multilabel task's sample data;
- ``digits_count``: 1 to 4 copies of one digit; columns ``digit`` (its class) and ``count``
  (how many): the regression task's sample (``train.targets: [count]``) and a two-head net's
  (a class head and a count head).

Deterministic (a fixed seed), generated in a fraction of a second; each canvas draws its
digits from the 1,797 bundled images at a random offset inside its quadrant.
"""

from __future__ import annotations

import numpy as np

from ..registry import ArrayParts, SourceKind

SIZE = 32  # the canvas side; quadrants of 16 hold an 8x8 digit at an offset of 0..8
COUNT = 3000
SEED = 20240516
DIGITS = [str(i) for i in range(10)]


def _canvases(rng, pick):
    """uint8 canvases (N, 32, 32, 1) and the digit chosen per used quadrant (N, 4; -1 empty)."""
    from ..arrays import digits

    x, y, _ = digits()
    by_class = [np.flatnonzero(y == c) for c in range(10)]
    out = np.zeros((COUNT, SIZE, SIZE, 1), np.float32)
    placed = np.full((COUNT, 4), -1, np.int64)
    for i in range(COUNT):
        classes = pick(rng)
        quadrants = rng.permutation(4)[: len(classes)]
        for cls, q in zip(classes, quadrants, strict=True):
            img = x[rng.choice(by_class[cls])]
            top = (q // 2) * 16 + int(rng.integers(0, 9))
            left = (q % 2) * 16 + int(rng.integers(0, 9))
            out[i, top : top + 8, left : left + 8] = img
            placed[i, q] = cls
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), placed


def _split(x, table, req):
    from ..splits import split_arrays

    return split_arrays(x, table, req.validation_split, req.test_split)


def read_multilabel(source: str, req) -> ArrayParts:
    rng = np.random.default_rng(SEED)
    x, placed = _canvases(rng, lambda r: r.permutation(10)[: int(r.integers(2, 5))])
    table = np.zeros((COUNT, 10), np.float32)
    for i, row in enumerate(placed):
        table[i, row[row >= 0]] = 1.0
    parts = ArrayParts(_split(x, table, req), DIGITS, [source, str(SEED)])
    parts.columns = list(DIGITS)
    return parts


def read_count(source: str, req) -> ArrayParts:
    rng = np.random.default_rng(SEED + 1)
    x, placed = _canvases(rng, lambda r: [int(r.integers(0, 10))] * int(r.integers(1, 5)))
    digit = placed.max(axis=1).astype(np.float32)
    count = (placed >= 0).sum(axis=1).astype(np.float32)
    table = np.stack([digit, count], axis=1)
    parts = ArrayParts(_split(x, table, req), ["digit", "count"], [source, str(SEED)])
    parts.columns = ["digit", "count"]
    parts.column_classes = {"digit": list(DIGITS)}
    return parts


MULTILABEL = SourceKind(
    "digits_multilabel", "digits_multilabel", lambda s: s == "digits_multilabel",
    read_multilabel, path=False,
)  # fmt: skip
COUNTS = SourceKind(
    "digits_count", "digits_count", lambda s: s == "digits_count", read_count, path=False
)
