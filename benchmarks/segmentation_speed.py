"""Segmentation training speed in one run: `cnnspec train` of the small U-Net ÷ the same U-Net
and recipe written by hand in Keras + tf.data on the same files (training images/s; target
>= 0.95).

Usage: python benchmarks/segmentation_speed.py [--epochs 4] [--repeats 3] [--images 1500]

The shipped canvases (digits_segmentation) are written once as a user folder (images/ grey
PNGs, masks/ PNGs of class indices, 255 = ignore). Both sides train specs/unet_small.yaml's
network on that folder: cnnspec with ``--data <folder>``; by hand, a tf.data pipeline that
decodes the same PNGs, caches them in memory, shuffles and batches, and Keras ``fit`` with
SparseCategoricalCrossentropy(ignore_class=255) and two MeanIoU(ignore_class=255) metrics (the
spec logs mean_iou and dice). Augmentation is off on both sides (the by-hand side has no
mask-aware translate), Adam at the spec's lr without its schedule on either. Each side's
images/s leaves out its first epoch (tracing, cache fill); the figure is the best of
``--repeats`` interleaved runs (external load only slows a run down).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "unet_small.yaml"
SETS = ["train.augment=[]", "train.schedule=constant"]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_keras import fit_epoch_times, pipeline, train_share  # noqa: E402


def write_folder(root: Path, count: int) -> Path:
    from PIL import Image

    from cnnspec.data.kinds.segmentation import canvases

    x, masks = canvases(count)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        Image.fromarray(x[i, ..., 0]).save(root / "images" / f"c{i:05d}.png")
        Image.fromarray(masks[i], mode="L").save(root / "masks" / f"c{i:05d}.png")
    return root


def by_hand(spec, folder: Path, epochs: int) -> float:
    """images/s of the spec's U-Net trained with plain Keras fit on a plain tf.data pipeline."""
    import keras
    import tensorflow as tf

    from cnnspec.build import build_model

    r = spec.train
    names = sorted(p.name for p in (folder / "images").iterdir())
    names = names[: train_share(len(names), r)]  # the same training share as cnnspec's split
    images = [str(folder / "images" / n) for n in names]
    masks = [str(folder / "masks" / n) for n in names]

    def load(image, mask):
        x = tf.io.decode_png(tf.io.read_file(image), channels=1)
        m = tf.io.decode_png(tf.io.read_file(mask), channels=1)[..., 0]
        return x, m

    ds = pipeline((images, masks), load, r)
    model = build_model(spec)
    model.compile(
        optimizer=keras.optimizers.Adam(r.optimizer.params.lr),
        loss=keras.losses.SparseCategoricalCrossentropy(ignore_class=255),
        metrics=[
            keras.metrics.MeanIoU(11, ignore_class=255, sparse_y_pred=False, name="mean_iou"),
            keras.metrics.MeanIoU(11, ignore_class=255, sparse_y_pred=False, name="dice"),
        ],
    )
    times = fit_epoch_times(model, ds, epochs)
    return len(images) / min(times[1:] or times)


def by_cnnspec(folder: Path, epochs: int, deterministic: str) -> float:
    from cnnspec.spec import load_spec
    from cnnspec.train import train

    sets = [*SETS, f"train.epochs={epochs}", f"train.data={folder}", "train.cache=memory",
            f"train.deterministic={deterministic}"]  # fmt: skip
    spec = load_spec(SPEC, sets)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(spec, run_dir=Path(tmp) / "run", verbose=0, echo=lambda _: None)
    return float(result.metrics["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument(
        "--deterministic", default="auto", choices=("auto", "on", "off"),
        help="cnnspec's train.deterministic (auto: on without a GPU; the by-hand side never "
        "turns op determinism on)",
    )  # fmt: skip
    args = parser.parse_args()
    from cnnspec.spec import load_spec

    spec = load_spec(SPEC, SETS)
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "canvases", args.images)
        for _ in range(args.repeats):
            ours.append(by_cnnspec(folder, args.epochs, args.deterministic))
            theirs.append(by_hand(spec, folder, args.epochs))
    best_ours, best_theirs = max(ours), max(theirs)
    print(f"small U-Net, {SPEC.name} on {args.images} canvases (a folder of PNGs), batch "
          f"{spec.train.batch_size}, cnnspec deterministic {args.deterministic}")  # fmt: skip
    print(f"  cnnspec train : {best_ours:8.0f} images/s (runs: {[round(v) for v in ours]})")
    print(f"  Keras by hand : {best_theirs:8.0f} images/s (runs: {[round(v) for v in theirs]})")
    print(f"  ratio         : {best_ours / best_theirs:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
