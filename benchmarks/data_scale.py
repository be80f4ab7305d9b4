"""Data larger than memory: `cnnspec train` vs a hand-written streaming tf.data + Keras baseline.

Generates N synthetic JPEG photos (500x375, smooth gradients + blotches + grain, so that JPEG
sizes are those of photos: ~40-70 KB) in class folders, then trains the same tiny conv net
(written as a spec for cnnspec, by hand in Keras for the baseline) for one epoch on all of them,
each run a separate process. Prints, per run: peak RSS of the process (os.wait4), training
images/s (the fit epoch), end-to-end wall time, and the ratios against the baseline.

    python benchmarks/data_scale.py --n 12000 --size 448          # the issue's target run
    python benchmarks/data_scale.py --n 600 --size 224            # a quick look
    python benchmarks/data_scale.py --scan 1000000                # listing 1,000,000 files

The cnnspec runs: ``cache: auto`` (memory when the uint8 images fit a quarter of the machine's
memory, else a disk cache, else streaming; the choice is printed) and ``cache: none``
(streaming, the same work as the baseline). The disk cache goes to a folder of the work
directory and is removed first, so the run pays for filling it. Targets (issue 8): peak RSS
<= 4.5 GB and >= 0.8x the baseline's images/s at 12,000 photos, 448x448x3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CLASSES = 10
PHOTO = (375, 500)  # H, W


# --- synthetic photos -----------------------------------------------------------------------------


_GRAIN: list = []


def _photo(rng, label: int):
    """A 500x375 RGB 'photo': a tilted colour gradient, smooth blotches, sensor grain."""
    import numpy as np
    from PIL import Image

    h, w = PHOTO
    if not _GRAIN:  # a few grain fields, reused at random offsets (generating is the slow part)
        g = np.random.default_rng(99)
        _GRAIN.extend(g.normal(0, 6, (h, w, 3)).astype(np.int16) for _ in range(4))
    # The smooth content is drawn at 1/5 size and upscaled (bilinear): cheap and photo-like.
    sh, sw = h // 5, w // 5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.sin(angle) * np.arange(sh)[:, None] + np.cos(angle) * np.arange(sw)[None, :]) / sw
    base = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], np.float32)
    small = base + ramp[..., None] * rng.uniform(-90, 90, 3)
    coarse = rng.normal(0, 40, (sh // 5 + 1, sw // 5 + 1, 3))
    small += np.repeat(np.repeat(coarse, 5, axis=0), 5, axis=1)[:sh, :sw]
    small = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    grain = np.roll(_GRAIN[int(rng.integers(4))], int(rng.integers(h * w)), axis=None)
    return np.clip(np.asarray(small, np.int16) + grain, 0, 255).astype(np.uint8)


def _write_photos(args: tuple[str, int, int, int]) -> int:
    from PIL import Image

    folder, start, stop, seed = args
    import numpy as np

    total = 0
    for i in range(start, stop):
        rng = np.random.default_rng(seed + i)
        label = i % CLASSES
        path = Path(folder) / f"class{label}" / f"{i:07d}.jpg"
        Image.fromarray(_photo(rng, label)).save(path, quality=90)
        total += path.stat().st_size
    return total


def make_photos(folder: Path, n: int) -> Path:
    """N JPEG photos in CLASSES class folders (reused when the folder already holds them)."""
    from multiprocessing import Pool

    done = folder / ".complete"
    if done.is_file() and done.read_text() == str(n):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir(parents=True)
    start = time.perf_counter()
    chunks = [(str(folder), i, min(i + 200, n), 0) for i in range(0, n, 200)]
    with Pool(os.cpu_count() or 2) as pool:
        nbytes = sum(pool.map(_write_photos, chunks))
    print(
        f"generated {n} JPEGs {PHOTO[1]}x{PHOTO[0]} in {time.perf_counter() - start:.0f} s, "
        f"{nbytes / n / 1024:.0f} KB each on average",
        flush=True,
    )
    done.write_text(str(n))
    return folder


# --- the runs, each a separate process -------------------------------------------------------------

SPEC = """\
name: tiny_photos
input: [{size}, {size}, 3]
layers:
  - conv: 5x5, 16, s=4, p=same, relu
  - maxpool: 2x2, s=2
  - conv: 3x3, 32, s=2, p=same, relu
  - conv: 3x3, 64, s=2, p=same, relu
  - gavgpool
  - dense: {classes}, softmax
train:
  epochs: 1
  batch_size: {batch}
  validation_split: 0.0
  test_split: 0.0
  optimizer: {{adam: {{lr: 1.0e-3}}}}
  loss: sparse_categorical_crossentropy
"""

BASELINE = """\
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras, tensorflow as tf
from keras import layers

root, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started = time.perf_counter()
classes = sorted(d for d in os.listdir(root) if not d.startswith("."))
files = [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
         for f in sorted(os.listdir(os.path.join(root, c)))]
paths, labels = zip(*files)
ds = tf.data.Dataset.from_tensor_slices((list(paths), list(labels)))
ds = ds.shuffle(len(files), seed=42, reshuffle_each_iteration=True)

def load(path, label):
    image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
    image = tf.image.resize(image, (size, size), antialias=True)
    return image, label

ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)
inputs = keras.Input((size, size, 3))
x = layers.Rescaling(1 / 255)(inputs)
x = layers.Conv2D(16, 5, strides=4, padding="same", activation="relu")(x)
x = layers.MaxPooling2D(2, 2)(x)
x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(x)
x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(len(classes), activation="softmax")(x)
model = keras.Model(inputs, outputs)
model.compile(
    optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.t

timer = Timer()
model.fit(ds, epochs=1, callbacks=[timer], verbose=0)
print(json.dumps({"images_per_s": len(files) / timer.seconds, "train_time_s": timer.seconds,
                  "wall_s": time.perf_counter() - started}))
"""


def run_process(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of that process, stdout) of one child process."""
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"{' '.join(cmd)} failed ({proc.returncode}); see {log}:\n{log.read_text()[-2000:]}"
        )
    return wall, usage.ru_maxrss * 1024, out  # ru_maxrss is in KB on Linux


def run_cnnspec(work: Path, photos: Path, size: int, batch: int, cache: str) -> dict:
    spec = work / "tiny_photos.yaml"
    spec.write_text(SPEC.format(size=size, classes=CLASSES, batch=batch))
    run = work / f"run_{cache}"
    shutil.rmtree(run, ignore_errors=True)
    env = {**os.environ, "CNNSPEC_CACHE": str(work / "cache")}
    shutil.rmtree(work / "cache", ignore_errors=True)  # pay for filling it
    exe = str(Path(sys.executable).with_name("cnnspec"))
    cmd = [exe, "train", str(spec), "--data", str(photos), "--out", str(run), "--quiet"]
    cmd += ["--set", f"train.cache={cache}"]
    wall, rss, out = run_process(cmd, env, work / f"cnnspec_{cache}.log")
    metrics = json.loads((run / "metrics.json").read_text())
    chosen = next((line for line in out.splitlines() if line.startswith("cache: ")), "?")
    return {
        "images_per_s": metrics["images_per_s"],
        "train_time_s": metrics["train_time_s"],
        "wall_s": wall,
        "rss": rss,
        "note": chosen,
    }


def run_baseline(work: Path, photos: Path, size: int, batch: int) -> dict:
    script = work / "baseline.py"
    script.write_text(BASELINE)
    cmd = [sys.executable, str(script), str(photos), str(size), str(batch)]
    wall, rss, out = run_process(cmd, dict(os.environ), work / "baseline.log")
    result = json.loads(out.strip().splitlines()[-1])
    return {**result, "wall_s": wall, "rss": rss, "note": "streaming tf.data, float32 resize"}


def data_scale(args) -> None:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    photos = make_photos(work / f"photos_{args.n}", args.n)
    load_at_start = os.getloadavg()[0]
    rows = {"baseline": run_baseline(work, photos, args.size, args.batch)}
    for cache in args.caches:
        rows[f"cnnspec cache={cache}"] = run_cnnspec(work, photos, args.size, args.batch, cache)
    base = rows["baseline"]
    print(
        f"\n{args.n} JPEG photos {PHOTO[1]}x{PHOTO[0]} -> {args.size}x{args.size}x3, 1 epoch, "
        f"batch {args.batch}, {os.cpu_count()} CPU cores, load average {load_at_start:.1f} at "
        f"the start, {os.getloadavg()[0]:.1f} at the end (other processes share the cores)"
    )
    print(
        f"{'run':<24} {'peak RSS':>9} {'train img/s':>12} {'x base':>7} {'wall s':>7} {'x base':>7}"
    )
    for name, r in rows.items():
        print(
            f"{name:<24} {r['rss'] / 1024**3:>7.2f}GB {r['images_per_s']:>12.1f} "
            f"{r['images_per_s'] / base['images_per_s']:>7.2f} {r['wall_s']:>7.1f} "
            f"{base['wall_s'] / r['wall_s']:>7.2f}"
        )
    for name, r in rows.items():
        print(f"  {name}: {r['note']}")
    print("(x base: images/s ratio, and baseline wall / run wall: above 1 is faster)")


# --- scanning a huge folder ----------------------------------------------------------------------


def scan(args) -> None:
    from cnnspec.data.scan import scan_classes

    root = Path(args.work) / f"scan_{args.scan}"
    done = root / ".complete"
    if not (done.is_file() and done.read_text() == str(args.scan)):
        shutil.rmtree(root, ignore_errors=True)
        start = time.perf_counter()
        per_class = args.scan // 100
        for c in range(100):
            folder = root / f"class{c:02d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                os.close(os.open(folder / f"{i:07d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
        done.write_text(str(args.scan))
        print(f"created {args.scan:,} empty files in {time.perf_counter() - start:.0f} s")
    # Best of 2 interleaved runs each: the first listing may hit a cold directory cache, and
    # external load only ever slows a run down.
    ours = base = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        _, files = scan_classes(root)
        ours = min(ours, time.perf_counter() - start)
        start = time.perf_counter()
        plain = [
            str(p)
            for c in sorted(p for p in root.iterdir() if p.is_dir())
            for p in sorted(c.rglob("*"))
            if p.is_file() and p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif")
        ]
        base = min(base, time.perf_counter() - start)
    assert len(files) == len(plain) == args.scan, (len(files), len(plain))
    print(
        f"scan of {args.scan:,} files: cnnspec (os.scandir, no stat) {ours:.1f} s, "
        f"pathlib rglob + is_file {base:.1f} s: {base / ours:.1f}x faster (best of 2 each)"
    )
    # Everything `cnnspec train` does before the first image is decoded (streaming): scan,
    # split, cache decision, the tf.data graph.
    from cnnspec.data import load_data

    start = time.perf_counter()
    data = load_data(str(root), (224, 224, 3), cache="none")
    print(
        f"load_data(cache='none') of {sum(data.sizes.values()):,} files, ready to decode: "
        f"{time.perf_counter() - start:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=600, help="photos to generate")
    parser.add_argument("--size", type=int, default=224, help="the spec's input height/width")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--caches", nargs="+", default=["auto", "none"])
    parser.add_argument("--work", default="/tmp/cnnspec_data_scale", help="work directory")
    parser.add_argument("--scan", type=int, default=0, help="only time a scan of this many files")
    args = parser.parse_args()
    if args.scan:
        scan(args)
    else:
        data_scale(args)


if __name__ == "__main__":
    main()
