"""The by-hand side of the training-speed benchmarks (task_speed.py, segmentation_speed.py):
what a user writes without cnnspec — a plain tf.data pipeline over the same files and Keras
``fit`` — in one place, so that every benchmark compares against the same baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def train_share(n: int, recipe: Any) -> int:
    """How many of ``n`` examples cnnspec's split trains on (validation and test held out)."""
    return n - round(n * recipe.validation_split) - round(n * recipe.test_split)


def pipeline(slices: tuple, load: Callable, recipe: Any):
    """from_tensor_slices(slices) -> map(load) -> cache in memory -> shuffle -> batch -> float32
    images -> prefetch: the pipeline the tf.data guide teaches."""
    import tensorflow as tf

    auto = tf.data.AUTOTUNE
    return (
        tf.data.Dataset.from_tensor_slices(slices)
        .map(load, num_parallel_calls=auto)
        .cache()
        .shuffle(10_000, seed=recipe.seed)
        .batch(recipe.batch_size)
        .map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=auto)
        .prefetch(auto)
    )


def fit_epoch_times(model: Any, ds: Any, epochs: int, callbacks: list | None = None) -> list[float]:
    """Keras ``fit`` of ``ds`` for ``epochs``; the seconds each epoch took."""
    import keras

    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=epochs, verbose=0, callbacks=[Clock(), *(callbacks or [])])
    return times
