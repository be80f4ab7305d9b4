"""The one tf.data input pipeline: shuffle, repeat, batch, augment, prefetch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reading:
    """How a split's dataset is read, as ``make_pipeline`` needs to know (``Data.reading``).

    It travels beside the dataset, never on it: attributes set on a tf.data object vanish
    after any transform.
    """

    in_memory: bool = False  # an in-memory cache: a shuffle buffer shares its images
    shuffled: bool = False  # streamed: its whole file order is reshuffled every epoch
    cropped: bool = False  # the random resized crop was fused with JPEG decoding


SHUFFLE_BUFFER = 10_000
# Streamed or disk-cached images are copies: 10,000 at 448x448x3 would be 6 GB.
SHUFFLE_BYTES = 256 * 1024**2


def shuffle_buffer(ds, batch_size: int, in_memory: bool) -> int:
    """Elements in the shuffle buffer: SHUFFLE_BUFFER, bounded to SHUFFLE_BYTES of images
    unless the dataset is an in-memory cache (the buffer then shares the cached images)."""
    import numpy as np

    if in_memory:
        return SHUFFLE_BUFFER
    spec = ds.element_spec[0]
    if not spec.shape.is_fully_defined():
        return SHUFFLE_BUFFER
    nbytes = int(np.prod(spec.shape)) * spec.dtype.size
    return max(batch_size * 2, min(SHUFFLE_BUFFER, SHUFFLE_BYTES // max(nbytes, 1)))


def make_pipeline(
    ds,
    batch_size: int,
    *,
    training: bool,
    augment: Sequence[Any] = (),
    seed: int = 0,
    repeat: bool = False,
    labels=None,
    reading: Reading | None = None,
):
    """Batch an unbatched (image, label) dataset for training or evaluation.

    Training: shuffle (seeded, reshuffled every epoch) -> repeat -> batch -> augment.
    ``repeat=True`` pairs with ``steps_per_epoch`` (it avoids tf.data's stall at epoch starts).
    ``labels`` is an optional graph function applied to each label batch (one-hot, dict, ...).
    ``reading``: how ``ds`` is read (``Data.reading(split)``); default: a plain dataset.
    """
    import tensorflow as tf

    reading = reading or Reading()
    in_memory, shuffled = reading.in_memory, reading.shuffled
    if reading.cropped:  # the random resized crop was fused with JPEG decoding
        augment = [a for a in augment if a.kind != "random_resized_crop"]
    options = tf.data.Options()
    options.deterministic = True
    # Shard by element, never by file: with a single source file (arrays) FILE sharding
    # would make every worker train on the same data.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    # A streamed split already shuffles its whole file list every epoch (seeded): a buffer of
    # decoded images on top would only delay the first batch.
    if training and not shuffled:
        buffer = shuffle_buffer(ds, batch_size, in_memory)
        ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    # Images stay uint8 (4x less memory) until here; the model takes float32 in [0, 255].
    ds = ds.batch(batch_size)
    if training and augment:
        from .augment import augment_batches

        return augment_batches(ds, augment, seed, labels).prefetch(tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    if labels is not None:
        ds = ds.map(lambda x, y: (x, labels(y)), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
