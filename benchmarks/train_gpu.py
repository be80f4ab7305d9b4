"""GPU truth: `cnnspec train specs/resnet50.yaml` against keras.applications.ResNet50 by hand.

One run, the same work done both ways on the same synthetic JPEG folder:

1. generate N JPEG "photos" (500x375, smooth colour fields, 1000 classes; reused if present);
2. ``cnnspec train specs/resnet50.yaml --data DIR --epochs 2`` with auto settings (on a GPU:
   mixed_float16 with loss scaling, XLA, determinism off), every image a training image;
3. the same recipe written by hand in plain Keras/tf.data, in its own process: the precision,
   XLA and determinism that cnnspec resolved (read from its metrics.json), Adam(1e-3),
   categorical cross-entropy on one-hot labels, batch, seed, shuffle, 2 epochs; decode ->
   resize -> cache uint8 -> shuffle -> repeat -> batch; ``Rescaling(1/255)`` and
   ``keras.applications.ResNet50(weights=None)`` with a float32 softmax;
4. print training images/s of both (the second epoch: the first holds tracing, XLA
   compilation and the cache fill), their ratio (target >= 0.97) and peak GPU memory
   (nvidia-smi, sampled every 0.2 s with TF_FORCE_GPU_ALLOW_GROWTH so that it shows use,
   not TensorFlow's up-front reservation; the hand-written run also reports TensorFlow's own
   peak).

    python benchmarks/train_gpu.py                 # a GPU machine: 10,000 images, batch 256
    python benchmarks/train_gpu.py --smoke         # anywhere: 64 images, 64x64 input, batch 8
    python benchmarks/train_gpu.py --images 20000 --batch 512 --json out.json

Run through benchmarks/gpu_check.sh, which also prints the machine. Needs
``pip install -e '.[gpu]'`` for a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "resnet50.yaml"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# --------------------------------------------------------------------------- synthetic photos


def _write_class(job: tuple[str, int, int, int, int, int]) -> None:
    import numpy as np
    from PIL import Image

    folder, cls, count, width, height, seed = job
    rng = np.random.default_rng(seed * 100_003 + cls)
    Path(folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        # a coarse random colour field, upsampled: smooth like a photo, compresses like one
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        pixels = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
            Path(folder) / f"{i:05d}.jpg", quality=90
        )


def make_photos(root: Path, images: int, classes: int, size: tuple[int, int]) -> Path:
    """``root/cNNNN/*.jpg``: ``images`` JPEGs over ``classes`` folders (reused when complete)."""
    from multiprocessing import Pool

    done = root / "COMPLETE"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    per_class = [images // classes + (c < images % classes) for c in range(classes)]
    jobs = [(str(root / f"c{c:04d}"), c, n, *size, 0) for c, n in enumerate(per_class)]
    start = time.perf_counter()
    with Pool(os.cpu_count() or 1) as pool:
        pool.map(_write_class, jobs, chunksize=max(1, len(jobs) // 64))
    done.write_text(f"{images} images\n")
    print(f"generated {images} JPEGs in {time.perf_counter() - start:.1f} s -> {root}", flush=True)
    return root


# --------------------------------------------------------------------------- GPU memory


class GpuMemory:
    """Peak of nvidia-smi's memory.used (MiB, summed over GPUs) while the block runs."""

    def __init__(self) -> None:
        self.available = shutil.which("nvidia-smi") is not None
        self.peak_mib = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout  # fmt: skip
                used = sum(int(x) for x in out.split() if x.strip().isdigit())
                self.peak_mib = max(self.peak_mib, used)
            except (OSError, subprocess.SubprocessError):
                pass
            self._stop.wait(0.2)

    def __enter__(self) -> GpuMemory:
        if self.available:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def describe(self) -> str:
        return f"{self.peak_mib / 1024:.2f} GiB" if self.available else "n/a (no nvidia-smi)"


# --------------------------------------------------------------------------- the two runs


def spec_overrides(args) -> list[str]:
    """--set overrides for cnnspec train: every image trains; the smoke size if asked."""
    import yaml

    sets = ["train.validation_split=0", "train.test_split=0", f"train.seed={args.seed}"]
    if args.input != 224 or args.classes != 1000:
        last = len(yaml.safe_load(SPEC.read_text())["layers"]) - 1
        sets += [f"input=[{args.input}, {args.input}, 3]", f"layers.{last}.dense={args.classes}, softmax"]  # fmt: skip
    return sets


def run_cnnspec(args, data: Path, out: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "cli.py"), "train", str(SPEC), "--data", str(data),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch), "--out", str(out),
           "--quiet"]  # fmt: skip
    for s in spec_overrides(args):
        cmd += ["--set", s]
    print("$", " ".join(cmd[1:]), flush=True)
    with GpuMemory() as mem:
        proc = subprocess.run(cmd, text=True, capture_output=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(
            f"cnnspec train failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "images_per_s": metrics["images_per_s"],
        "epoch_seconds": metrics["train_time_s"],
        "hardware": metrics["hardware"],
        "peak_gpu_memory": mem.describe(),
    }


def run_baseline(args, data: Path, hardware: dict) -> dict:
    cmd = [sys.executable, __file__, "--baseline-only", "--data", str(data),
           "--batch", str(args.batch), "--epochs", str(args.epochs), "--input", str(args.input),
           "--classes", str(args.classes), "--seed", str(args.seed),
           "--precision", hardware["precision"], "--jit", str(int(hardware["jit_compile"])),
           "--deterministic", str(int(hardware["deterministic"]))]  # fmt: skip
    with GpuMemory() as mem:
        proc = subprocess.run(cmd, text=True, capture_output=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"hand-written baseline failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["peak_gpu_memory"] = mem.describe()
    return result


def baseline(args) -> None:
    """The same recipe by hand (runs in its own process: policy and XLA are process-wide)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    if args.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(args.precision)

    classes = sorted(p.name for p in Path(args.data).iterdir() if p.is_dir())
    files, labels = [], []
    for index, name in enumerate(classes):
        for f in sorted((Path(args.data) / name).glob("*.jpg")):
            files.append(str(f))
            labels.append(index)
    size = (args.input, args.input)

    def load(path, label):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.resize(image, size, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8), label

    def to_model(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, len(classes))

    ds = (
        tf.data.Dataset.from_tensor_slices((files, labels))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .cache()
        .shuffle(10_000, seed=args.seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(args.batch)
        .map(to_model, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    inputs = keras.Input((*size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.applications.ResNet50(
        weights=None, input_shape=(*size, 3), classes=len(classes), classifier_activation=None
    )(x)
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)  # the mixed-precision guide
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=["accuracy"],
        jit_compile=bool(args.jit),
    )

    class EpochTimer(keras.callbacks.Callback):  # first batch start -> last batch end
        seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = self.last = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(self.last - self.start)

    steps = math.ceil(len(files) / args.batch)
    timer = EpochTimer()
    model.fit(ds, epochs=args.epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    steady = timer.seconds[1:] or timer.seconds
    result = {
        "images_per_s": steps * args.batch * len(steady) / sum(steady),
        "epoch_seconds": sum(timer.seconds),
        "parameters": model.count_params(),
    }
    if tf.config.list_physical_devices("GPU"):
        peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        result["tensorflow_peak_gpu_memory"] = f"{peak / 2**30:.2f} GiB"
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes that run on a CPU")
    parser.add_argument("--images", type=int, default=None, help="default 10000 (smoke 64)")
    parser.add_argument("--classes", type=int, default=None, help="default 1000 (smoke 4)")
    parser.add_argument("--input", type=int, default=None, help="default 224 (smoke 64)")
    parser.add_argument("--batch", type=int, default=None, help="default 256 (smoke 8)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", type=Path, default=None, help="where the JPEGs are made")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    # the hand-written run's own process
    parser.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--jit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    small = {"images": 64, "classes": 4, "input": 64, "batch": 8}
    full = {"images": 10_000, "classes": 1000, "input": 224, "batch": 256}
    for key, value in (small if args.smoke else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.baseline_only:
        baseline(args)
        return

    tag = f"{args.images}x{args.classes}"
    data = args.data or Path(tempfile.gettempdir()) / f"cnnspec-gpu-check-{tag}"
    make_photos(data, args.images, args.classes, (500, 375))
    with tempfile.TemporaryDirectory(prefix="cnnspec-gpu-check-run-") as tmp:
        ours = run_cnnspec(args, data, Path(tmp) / "run")
    hand = run_baseline(args, data, ours["hardware"])
    ratio = ours["images_per_s"] / hand["images_per_s"]
    hw = ours["hardware"]
    print(
        f"settings (auto, as cnnspec resolved them): {hw['device']}, {hw['precision']}, "
        f"loss scaling {hw['loss_scaling']}, XLA {hw['jit_compile']}, "
        f"deterministic {hw['deterministic']}, {hw['distribute']}; batch {args.batch}, "
        f"{args.epochs} epochs of {args.images} images at {args.input}x{args.input}x3"
    )
    print(
        f"cnnspec train specs/resnet50.yaml: {ours['images_per_s']:9,.1f} images/s, "
        f"peak GPU memory {ours['peak_gpu_memory']}"
    )
    print(
        f"keras.applications.ResNet50 by hand: {hand['images_per_s']:9,.1f} images/s, "
        f"peak GPU memory {hand['peak_gpu_memory']}"
        + (f" (TensorFlow: {hand['tensorflow_peak_gpu_memory']})" if "tensorflow_peak_gpu_memory" in hand else "")
    )  # fmt: skip
    print(f"ratio cnnspec / by hand: {ratio:.3f} (target >= 0.97)")
    if args.json:
        args.json.write_text(
            json.dumps({"cnnspec": ours, "by_hand": hand, "ratio": ratio, "args": {
                k: str(v) for k, v in vars(args).items()}}, indent=2) + "\n"
        )  # fmt: skip


if __name__ == "__main__":
    main()
