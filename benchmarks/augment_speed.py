"""Augmentation speed, measured in one run: LeNet-5 on digits, training images/s with 4
geometric augmentations (flip_horizontal, rotate 0.1, translate 0.1, zoom 0.1) ÷ without.

Variants, each training the same spec-built model on the same cached digits:

- ``none``: no augmentation (the baseline every ratio divides by);
- ``combined``: cnnspec's pipeline (the default): one composed affine matrix per image, one
  resampling, in tf.data, in parallel with training;
- ``per_layer``: the previous pipeline, one Keras preprocessing layer per augmentation
  (RandomFlip, RandomRotation, RandomTranslation, RandomZoom), each resampling on its own;
- ``in_model``: the same combined transform as a layer at the front of the model (where it
  would run on an accelerator), the pipeline plain.

Usage: python benchmarks/augment_speed.py [--steps 60] [--repeats 7] [--cli 3]

Then, on the path users take, ``--cli`` pairs of ``cnnspec train specs/lenet5.yaml`` runs
with and without the augmentations (images/s from each run's metrics.json).

The machine is shared, so each figure is the best of ``--repeats`` short runs, the variants
interleaved within every repeat (external load only slows a run down; see train_speed.py).
The pipeline-alone rates (no model) are printed too: they show how much headroom the input
side has over training.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

AUGMENT = ["flip_horizontal", {"rotate": 0.1}, {"translate": 0.1}, {"zoom": 0.1}]


def per_layer(seed: int):
    """The pre-H3 augmenter: one Keras random layer (one resampling) per augmentation."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed, dtype="float32"),
            keras.layers.RandomRotation(0.1, seed=seed + 1, dtype="float32"),
            keras.layers.RandomTranslation(0.1, 0.1, seed=seed + 2, dtype="float32"),
            keras.layers.RandomZoom(0.1, 0.1, seed=seed + 3, dtype="float32"),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--cli", type=int, default=3, metavar="N",
        help="also N interleaved pairs of `cnnspec train specs/lenet5.yaml` runs (0: skip)",
    )  # fmt: skip
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from cnnspec.build import build_model
    from cnnspec.data import load_data, make_pipeline
    from cnnspec.data.augment import augment_layer
    from cnnspec.spec import load_spec
    from cnnspec.spec.train import TrainSpec

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs")
    spec = load_spec(os.path.join(root, "lenet5.yaml"))
    batch = spec.train.batch_size
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPUs {os.cpu_count()}, "
        f"GPUs {len(tf.config.list_physical_devices('GPU'))}, lenet5, batch {batch}, "
        f"augment {AUGMENT}"
    )
    data = load_data("digits", spec.graph.input_shape)
    augment = TrainSpec.model_validate({"augment": AUGMENT}).augment

    def labels(y):
        return tf.one_hot(y, data.num_classes)

    def pipe(aug=()):
        return make_pipeline(
            data.train, batch, training=True, augment=aug, seed=0, repeat=True, labels=labels
        )

    old = per_layer(0)
    old_pipe = pipe().map(
        lambda x, y: (old(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
    )

    def model(in_model: bool = False):
        keras.utils.set_random_seed(0)
        base = build_model(spec)
        if in_model:
            inputs = keras.Input(spec.graph.input_shape)
            base = keras.Model(inputs, base(augment_layer(augment, 0)(inputs)))
        base.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        return base

    variants = {
        "none": (model(), pipe()),
        "combined": (model(), pipe(augment)),
        "per_layer": (model(), old_pipe),
        "in_model": (model(in_model=True), pipe()),
    }

    def pipeline_rate(p, steps: int) -> float:
        it = iter(p)
        for _ in range(10):
            next(it)
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        return steps * batch / (time.perf_counter() - start)

    def train_rate(m, p, steps: int) -> tuple[float, float]:
        """(images per wall second, images per CPU second of this process, pipeline threads
        included: the steadier figure when other processes compete for the cores)."""
        wall, cpu = time.perf_counter(), time.process_time()
        m.fit(p, epochs=1, steps_per_epoch=steps, verbose=0)
        images = steps * batch
        return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)

    for m, p in variants.values():  # trace every train step before timing any
        m.fit(p, epochs=1, steps_per_epoch=10, verbose=0)
    rates: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
    feeds: dict[str, list[float]] = {k: [] for k in ("none", "combined", "per_layer")}
    for _ in range(args.repeats):  # interleaved: drifting machine load hits every variant
        for key, (m, p) in variants.items():
            rates[key].append(train_rate(m, p, args.steps))
            if key in feeds:
                feeds[key].append(pipeline_rate(p, args.steps))

    base = max(r[0] for r in rates["none"])
    base_cpu = max(r[1] for r in rates["none"])
    print(f"\ntraining images/s (best of {args.repeats} x {args.steps} steps), ratio to none:")
    print(f"  {'':10s} {'wall':>8s}  ratio   {'per CPU s':>9s}  ratio")
    for key, values in rates.items():
        wall, cpu = max(r[0] for r in values), max(r[1] for r in values)
        print(f"  {key:10s} {wall:8,.0f}  {wall / base:.2f}x   {cpu:9,.0f}  {cpu / base_cpu:.2f}x")
    print("input pipeline alone, images/s:")
    for key, values in feeds.items():
        print(f"  {key:10s} {max(values):8,.0f}")
    combined = max(r[0] for r in rates["combined"]) / base
    combined_cpu = max(r[1] for r in rates["combined"]) / base_cpu
    print(
        f"\n4 geometric augmentations / none (default, combined): wall {combined:.2f}x, "
        f"CPU time {combined_cpu:.2f}x  (target >= 0.8)"
    )
    if args.cli:
        cli_pairs(os.path.join(root, "lenet5.yaml"), args.cli)


def cli_pairs(spec: str, pairs: int, epochs: int = 6) -> None:
    """The path users take: `cnnspec train` with and without the augmentations, interleaved;
    images/s as the run reports it in metrics.json (its first epoch, tracing, left out)."""
    import json
    import tempfile

    from cnnspec.cli import main

    aug = "train.augment=[flip_horizontal, {rotate: 0.1}, {translate: 0.1}, {zoom: 0.1}]"
    rates: dict[str, list[float]] = {"none": [], "augment": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(pairs):
            for key, extra in (("none", []), ("augment", ["--set", aug])):
                out = os.path.join(tmp, f"{key}{i}")
                args = ["train", spec, "--out", out, "--epochs", str(epochs), "--quiet", *extra]
                assert main(args) == 0, args
                with open(os.path.join(out, "metrics.json")) as f:
                    rates[key].append(json.load(f)["images_per_s"])
    none, augment = max(rates["none"]), max(rates["augment"])
    print(
        f"\ncnnspec train specs/lenet5.yaml --epochs {epochs}, best of {pairs} interleaved pairs: "
        f"{none:,.0f} images/s without, {augment:,.0f} with the 4 augmentations: "
        f"{augment / none:.2f}x  (all: none {[round(r) for r in rates['none']]}, "
        f"augment {[round(r) for r in rates['augment']]})"
    )


if __name__ == "__main__":
    main()
