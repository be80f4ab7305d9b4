"""Task training speed in one run: `cnnspec train` of the multi-label head ÷ the same model and
recipe written by hand in Keras + tf.data on the same files (training images/s; target >= 0.95).

Usage: python benchmarks/task_speed.py [--epochs 4] [--repeats 2]

The shipped canvases (digits_multilabel, 3,000 32x32 images) are written once as a user's data:
grey PNGs and a CSV manifest ``path,labels`` (labels separated by ``;``). Both sides train
specs/multilabel.yaml's network on those files: cnnspec with ``--data <manifest>`` (cached in
memory); by hand, a tf.data pipeline that decodes the same PNGs, caches them, shuffles and
batches, and Keras ``fit`` with BinaryCrossentropy and the same F1 / F1-micro / AUC-PR metrics,
Adam at the spec's lr (both sides without the spec's schedule). Each side trains on the same
number of images (cnnspec's training split) and its images/s leaves out its first epoch
(tracing, cache fill), as cnnspec's own ``images_per_s`` does.

Each measurement runs in a fresh process: TensorFlow's op determinism cannot be turned off once
a process turned it on, and cnnspec turns it on by default without a GPU (bit-identical
reruns). So the figures are given like for like — cnnspec with determinism on ÷ by hand with
determinism on, the same with it off — besides the issue's figure (cnnspec's default ÷ plain
Keras, which never turns it on). Best of ``--repeats`` interleaved runs (external load only
slows a run down).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "multilabel.yaml"
SETS = ["train.schedule=constant", "train.augment=[]"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_keras import fit_epoch_times, pipeline, train_share  # noqa: E402


def write_files(root: Path) -> Path:
    """The digits_multilabel canvases as PNGs and a ``path,labels`` manifest; its path."""
    import numpy as np
    from PIL import Image

    from cnnspec.data.kinds.canvas import read_multilabel
    from cnnspec.data.sources import Request

    req = Request((32, 32, 1), 0.15, 0.15, "memory", 42, None, None)
    splits = read_multilabel("digits_multilabel", req).splits
    x = np.concatenate([s[0] for s in splits])
    y = np.concatenate([s[1] for s in splits])
    (root / "images").mkdir(parents=True)
    manifest = root / "labels.csv"
    with open(manifest, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "labels"])
        for i in range(len(x)):
            name = f"images/c{i:05d}.png"
            Image.fromarray(x[i, ..., 0]).save(root / name)
            out.writerow([name, ";".join(str(j) for j in np.flatnonzero(y[i]))])
    return manifest


def steady_rate(images: list[int], seconds: list[float]) -> float:
    """images/s over every epoch but the first (all of them when there is one)."""
    pairs = list(zip(images, seconds, strict=True))
    steady = pairs[1:] or pairs
    return sum(n for n, _ in steady) / sum(s for _, s in steady)


def by_hand(manifest: Path, epochs: int, deterministic: bool, batch_hook: bool = False) -> float:
    """images/s of the spec's network trained with plain Keras fit on a plain tf.data pipeline.

    ``batch_hook``: add a callback that reads the loss after every batch, as cnnspec's NaN
    guard does (a callback with ``on_train_batch_end`` turns off Keras' asynchronous dispatch
    of the batch callbacks): what that costs, measured alone."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnnspec.build import build_model
    from cnnspec.spec import load_spec

    spec = load_spec(SPEC, SETS)
    r = spec.train
    keras.utils.set_random_seed(r.seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[: train_share(len(rows), r)]  # the same training share as cnnspec's split
    paths = [str(manifest.parent / row["path"]) for row in rows]
    y = np.zeros((len(rows), 10), np.float32)
    for i, row in enumerate(rows):
        y[i, [int(v) for v in row["labels"].split(";") if v]] = 1.0

    def load(path, label):
        return tf.io.decode_png(tf.io.read_file(path), channels=1), label

    ds = pipeline((paths, y), load, r)
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

    class ReadLoss(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))

    times = fit_epoch_times(model, ds, epochs, [ReadLoss()] if batch_hook else [])
    return steady_rate([len(paths)] * len(times), times)


def by_cnnspec(manifest: Path, epochs: int, deterministic: bool, batch_hook: bool = False) -> float:
    from cnnspec.spec import load_spec
    from cnnspec.train import train

    sets = [*SETS, f"train.epochs={epochs}", f"train.data={manifest}", "train.cache=memory",
            f"train.deterministic={'on' if deterministic else 'off'}"]  # fmt: skip
    spec = load_spec(SPEC, sets)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(spec, run_dir=Path(tmp) / "run", verbose=0, echo=lambda _: None)
    return float(result.metrics["images_per_s"])


SIDES = {"cnnspec": by_cnnspec, "hand": by_hand}


def measure(side: str, manifest: Path, epochs: int, deterministic: bool, hook: bool) -> float:
    """One side's images/s, in a fresh Python process."""
    args = [sys.executable, __file__, "--side", side, "--manifest", str(manifest),
            "--epochs", str(epochs)] + (["--deterministic"] if deterministic else []) + (
            ["--batch-hook"] if hook else [])  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--determinism", choices=("both", "on", "off"), default="both",
        help="which like-for-like pair(s) to measure",
    )  # fmt: skip
    parser.add_argument("--side", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deterministic", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--batch-hook", action="store_true",
        help="diagnosis: the by-hand side also reads the loss after every batch (as cnnspec's "
        "NaN guard does)",
    )  # fmt: skip
    args = parser.parse_args()
    if args.side:  # one measurement (a child process)
        rate = SIDES[args.side](args.manifest, args.epochs, args.deterministic, args.batch_hook)
        print(json.dumps({"images_per_s": rate}))
        return
    from cnnspec.spec import load_spec

    spec = load_spec(SPEC, SETS)
    runs: dict[tuple[str, bool], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        manifest = write_files(Path(tmp) / "canvases")
        for _ in range(args.repeats):
            for det in {"both": (True, False), "on": (True,), "off": (False,)}[args.determinism]:
                for side in ("cnnspec", "hand"):
                    rate = measure(side, manifest, args.epochs, det, args.batch_hook)
                    runs.setdefault((side, det), []).append(rate)
                    print(f"  ({side}, determinism {det}: {rate:.0f} images/s)", flush=True)
    best = {key: max(v) for key, v in runs.items()}
    print(f"multilabel head, {SPEC.name} on 3,000 digits_multilabel PNGs + a path,labels "
          f"manifest, batch {spec.train.batch_size}, {args.epochs} epochs (first left out), "
          f"best of {args.repeats}")  # fmt: skip
    for (side, det), values in runs.items():
        what = "cnnspec train" if side == "cnnspec" else "Keras by hand"
        print(f"  {what}, determinism {'on ' if det else 'off'}: {best[side, det]:7.0f} images/s"
              f" (runs: {[round(v) for v in values]})")  # fmt: skip
    for det in (True, False):
        if ("cnnspec", det) in best:
            ratio = best["cnnspec", det] / best["hand", det]
            print(f"  ratio, like for like, determinism {'on ' if det else 'off'}: {ratio:.3f} "
                  "(target >= 0.95)")  # fmt: skip
    if len(best) == 4:
        default = best["cnnspec", True] / best["hand", False]
        print(f"  ratio, cnnspec's default (on) ÷ plain Keras (off): {default:.3f}")


if __name__ == "__main__":
    main()
