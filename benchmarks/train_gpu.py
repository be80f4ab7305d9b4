"""Training images/s of one spec under one precision / XLA setting (one process per setting).

Run by benchmarks/gpu_check.sh, once per setting, because the mixed-precision policy and XLA
are process-wide:

    python benchmarks/train_gpu.py --precision float32|mixed --jit off|on \\
        [--spec specs/resnet50.yaml] [--batch 256] [--steps 50]

Synthetic images (random pixels, cached on the device side of a tf.data pipeline) keep the
input pipeline out of the measurement; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="specs/resnet50.yaml")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--precision", choices=["float32", "mixed"], default="float32")
    parser.add_argument("--jit", choices=["off", "on"], default="off")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from cnnspec.build import build_model
    from cnnspec.spec import load_spec
    from cnnspec.train.hardware import detect_gpus, resolve

    n_gpus, cc = detect_gpus()
    spec = load_spec(args.spec)
    recipe = spec.train.model_copy(
        update={"mixed_precision": "on" if args.precision == "mixed" else "off"}
    )
    policy = resolve(recipe, gpus=n_gpus, compute_capability=cc).policy
    keras.mixed_precision.set_global_policy(policy)
    model = build_model(spec)
    classes = model.output_shape[-1]
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        jit_compile=args.jit == "on",
    )
    shape = tuple(spec.input)
    x = tf.random.uniform((args.batch, *shape), 0, 255, seed=0)
    y = tf.random.uniform((args.batch,), 0, classes, dtype=tf.int32, seed=1)
    ds = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(tf.data.AUTOTUNE)
    model.fit(ds, epochs=1, steps_per_epoch=args.warmup, verbose=0)
    start = time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "spec": spec.name,
                "device": f"{n_gpus} GPU (cc {cc})" if n_gpus else "CPU",
                "policy": policy,
                "jit": args.jit,
                "batch": args.batch,
                "images_per_s": round(args.steps * args.batch / seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
