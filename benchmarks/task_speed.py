"""Task training speed in one run: `cnnspec train` of the multi-label head ÷ the same model and
recipe written by hand in Keras + tf.data on the same data (training images/s; target >= 0.95).

Usage: python benchmarks/task_speed.py [--epochs 4] [--repeats 3]

Both sides train specs/multilabel.yaml's network on digits_multilabel (the same arrays, the
same batch size, Adam at the same lr, binary crossentropy, the same F1/AUC-PR metrics). Each
side's images/s leaves out its first epoch (tracing, cache fill); the figure is the best of
``--repeats`` interleaved runs (external load only slows a run down).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "multilabel.yaml"


def by_hand(spec, epochs: int) -> float:
    """images/s of the spec's network trained with plain Keras fit on a plain tf.data pipeline."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnnspec.build import build_model
    from cnnspec.data.kinds.canvas import read_multilabel
    from cnnspec.data.sources import Request

    r = spec.train
    req = Request((32, 32, 1), r.validation_split, r.test_split, "memory", r.seed, None, None)
    (x, y), _, _ = read_multilabel("digits_multilabel", req).splits
    model = build_model(spec)
    model.compile(
        optimizer=keras.optimizers.Adam(r.optimizer.params.lr),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[
            keras.metrics.F1Score(average="macro", threshold=0.5, name="f1"),
            keras.metrics.F1Score(average="micro", threshold=0.5, name="f1_micro"),
            keras.metrics.AUC(curve="PR", multi_label=True, num_labels=10, name="map"),
        ],
    )
    ds = (
        tf.data.Dataset.from_tensor_slices((x, y.astype(np.float32)))
        .cache()
        .shuffle(10_000, seed=r.seed)
        .batch(r.batch_size)
        .map(lambda a, b: (tf.cast(a, tf.float32), b), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(ds, epochs=epochs, verbose=0, callbacks=[Clock()])
    return len(x) / min(times[1:] or times)


def by_cnnspec(epochs: int) -> float:
    from cnnspec.spec import load_spec
    from cnnspec.train import train

    spec = load_spec(SPEC, [f"train.epochs={epochs}", "train.validation_split=0.15"])
    with tempfile.TemporaryDirectory() as tmp:
        result = train(spec, run_dir=Path(tmp) / "run", verbose=0, echo=lambda _: None)
    return float(result.metrics["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from cnnspec.spec import load_spec

    spec = load_spec(SPEC)
    ours, theirs = [], []
    for _ in range(args.repeats):
        ours.append(by_cnnspec(args.epochs))
        theirs.append(by_hand(spec, args.epochs))
    best_ours, best_theirs = max(ours), max(theirs)
    print(f"multilabel head, {SPEC.name} on digits_multilabel, batch {spec.train.batch_size}")
    print(f"  cnnspec train : {best_ours:8.0f} images/s (runs: {[round(v) for v in ours]})")
    print(f"  Keras by hand : {best_theirs:8.0f} images/s (runs: {[round(v) for v in theirs]})")
    print(f"  ratio         : {best_ours / best_theirs:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
