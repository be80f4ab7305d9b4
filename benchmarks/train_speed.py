"""Training speed, measured in one run (ratios, never absolute timing assertions).

1. spec-built model ÷ the same model written by hand in Keras, same pipeline: training images/s
   (target >= 0.97), for LeNet-5 and the small residual net;
2. input pipeline alone ÷ model training: images/s (target >= 5: the model never waits);
3. achieved training FLOP/s ÷ this machine's peak matmul FLOP/s (measured here, now).

Usage: python benchmarks/train_speed.py [--steps 60] [--repeats 7]

The machine is shared (other processes come and go), so each number is the best of
``--repeats`` short runs, interleaved between the two models: external load only ever slows a
run down, so the best run is the closest to the model's own speed (as ``timeit`` does).
Training FLOPs per image are taken as 3 x forward (forward + two backward matmuls), forward
FLOPs = 2 x the spec's MAC count.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BATCH = 64


def lenet_by_hand():
    import keras
    from keras import layers

    inputs = keras.Input((32, 32, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(6, 5, activation="tanh")(x)
    x = layers.AveragePooling2D(2, 2)(x)
    x = layers.Conv2D(16, 5, activation="tanh")(x)
    x = layers.AveragePooling2D(2, 2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(120, activation="tanh")(x)
    x = layers.Dense(84, activation="tanh")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def small_resnet_by_hand():
    import keras
    from keras import layers

    def conv_bn(x, n, k, s=1):
        x = layers.Conv2D(n, k, strides=s, padding="same", use_bias=False)(x)
        return layers.BatchNormalization()(x)

    def basic(x, n, s=1):
        shortcut = x if s == 1 and x.shape[-1] == n else conv_bn(x, n, 1, s)
        y = layers.Activation("relu")(conv_bn(x, n, 3, s))
        y = conv_bn(y, n, 3)
        return layers.Activation("relu")(layers.Add()([shortcut, y]))

    inputs = keras.Input((32, 32, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Activation("relu")(conv_bn(x, 16, 3))
    x = basic(x, 16)
    x = basic(x, 32, 2)
    x = basic(x, 64, 2)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def train_rate(model, pipeline, steps: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process) over ``steps`` batches.

    CPU time counts only this process's threads, so it barely moves when other processes
    compete for the cores; it is the steadier basis for the spec / hand-written ratio.
    """
    if not getattr(model, "_warm", False):  # the first fit traces the train step
        model.fit(pipeline, epochs=1, steps_per_epoch=20, verbose=0, shuffle=False)
        model._warm = True
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(pipeline, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    images = steps * BATCH
    return images / (time.perf_counter() - wall), images / (time.process_time() - cpu)


def pipeline_rate(pipeline, steps: int) -> float:
    it = iter(pipeline)
    for _ in range(20):
        next(it)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(steps):
            next(it)
        best = max(best, steps * BATCH / (time.perf_counter() - start))
    return best


def peak_matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        mm(a, b).numpy()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from cnnspec.build import build_model
    from cnnspec.data import load_data, make_pipeline
    from cnnspec.spec import load_spec
    from cnnspec.spec.train import TrainSpec

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "specs")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPUs {os.cpu_count()}, "
          f"GPUs {len(tf.config.list_physical_devices('GPU'))}, batch {BATCH}")  # fmt: skip
    data = load_data("digits", (32, 32, 1))

    def labels(y):
        return tf.one_hot(y, 10)

    pipe = make_pipeline(data.train, BATCH, training=True, seed=0, repeat=True, labels=labels)
    augment = TrainSpec.model_validate(
        {"augment": ["flip_horizontal", {"rotate": 0.1}, {"translate": 0.1}, {"zoom": 0.1}]}
    ).augment
    pipe_aug = make_pipeline(
        data.train, BATCH, training=True, augment=augment, seed=0, repeat=True, labels=labels
    )
    peak = peak_matmul_flops()
    print(f"peak matmul (2048^2 float32): {peak / 1e9:.1f} GFLOP/s")
    p_plain, p_aug = pipeline_rate(pipe, 400), pipeline_rate(pipe_aug, 100)
    print(f"pipeline alone: {p_plain:,.0f} images/s; with 4 augmentations: {p_aug:,.0f} images/s")

    for name, by_hand in (("lenet5", lenet_by_hand), ("small_resnet", small_resnet_by_hand)):
        spec = load_spec(os.path.join(root, f"{name}.yaml"))
        models = {"spec": build_model(spec), "hand": by_hand()}
        assert models["spec"].count_params() == models["hand"].count_params(), name
        for m in models.values():
            m.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
        rates: dict[str, list[tuple[float, float]]] = {"spec": [], "hand": []}
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits both
            for key, model in models.items():
                rates[key].append(train_rate(model, pipe, args.steps))
        spec_rate = max(r[0] for r in rates["spec"])
        hand_rate = max(r[0] for r in rates["hand"])
        spec_cpu = max(r[1] for r in rates["spec"])
        hand_cpu = max(r[1] for r in rates["hand"])
        flops = 3 * 2 * spec.graph.total_macs * spec_rate
        print(f"\n{name}: {models['spec'].count_params():,} params, "
              f"{spec.graph.total_macs / 1e6:.2f} M MACs/image")  # fmt: skip
        print(f"  training images/s: spec-built {spec_rate:,.0f}, hand-written {hand_rate:,.0f}")
        print(
            f"  ratio spec / hand-written, wall:     {spec_rate / hand_rate:.3f}  (target >= 0.97)"
        )
        print(f"  ratio spec / hand-written, CPU time: {spec_cpu / hand_cpu:.3f}  (target >= 0.97)")
        print(f"  ratio pipeline / training:           {p_plain / spec_rate:.1f}  (target >= 5)")
        print(f"  ratio augmented pipeline / training: {p_aug / spec_rate:.1f}")
        print(f"  achieved training {flops / 1e9:.2f} GFLOP/s = {flops / peak:.3f} of peak matmul")


if __name__ == "__main__":
    main()
