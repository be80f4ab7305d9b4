"""Labelled batches of a data source as numpy, streamed (evaluation and feature extraction).

A split is never materialised: a folder of 50,000 photos at 224x224x3 is 30 GB as float32, and
evaluating or extracting features from it must run in the memory of one batch. Progress (count,
rate, ETA) shows on a terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .images import read_errors
from .progress import progress

SPLIT_NAMES = ("train", "val", "test")


def split_names(data: Any, split: str) -> list[str]:
    """The splits ``split`` stands for: one name, or every split the data has (``all``)."""
    if split != "all":
        data.split(split)  # RunError if the source lacks it
        return [split]
    return [name for name in SPLIT_NAMES if getattr(data, name) is not None]


def labelled_batches(
    data: Any,
    names: Sequence[str],
    input_shape: Sequence[int],
    batch_size: int,
    *,
    what: str,
    echo: Callable[[str], None] | None = None,
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(split name, float32 images, int64 labels)`` batches of the splits ``names``.

    An image that does not decode mid-stream (a streamed folder) raises RunError naming it.
    """
    total = sum(int(data.sizes.get(name, 0)) for name in names) or None
    with progress(what, total, echo=echo) as bar:
        for name in names:
            batches = data.split(name).batch(batch_size).prefetch(2).as_numpy_iterator()
            while True:
                try:
                    x, y = next(batches)
                except StopIteration:
                    break
                except read_errors() as exc:
                    what = f"reading the {name} split failed"
                    raise data.read_failure(exc, input_shape, what) from None
                bar.advance(len(x))
                yield name, np.asarray(x, np.float32), np.asarray(y).reshape(-1).astype(np.int64)
