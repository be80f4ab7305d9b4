"""Small real models and run directories for the export / predict / evaluate / viz tests.

A run directory here has the layout ``cnnspec train`` writes (model.keras, meta.json, history.csv,
metrics.json): a small CNN trained for a few epochs on scikit-learn's digits, upsampled to 16x16,
pixels float32 in [0, 255], preprocessing (Rescaling) inside the model. Built once per test session
(cached) and shared read-only; tests that write put their outputs in their own tmp_path.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INPUT_SHAPE = [16, 16, 1]
CLASS_NAMES = [str(i) for i in range(10)]


@functools.cache
def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 16, 16, 1) float32 in [0, 255], labels (N,)) of one split of cnnspec's digits.

    Loaded through ``cnnspec.data`` so the images are resized exactly as training and prediction
    resize them.
    """
    from cnnspec.data import load_data

    data = load_data("digits", INPUT_SHAPE)
    xs, ys = zip(*data.split(split).batch(4096).as_numpy_iterator(), strict=True)
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


@functools.cache
def raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's original 8x8 digits as uint8 images in [0, 255] and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return x, digits.target.astype(np.int64)


def build_digits_model(seed: int = 0):
    """An inference-style Keras model: raw pixels in, softmax out, BN + pooling + dropout inside."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input(tuple(INPUT_SHAPE), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(0.2, name="drop")(x)
    out = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="probs")(x)
    return keras.Model(inp, out, name="digits_cnn")


def write_run_dir(run_dir: Path, model, history: dict[str, list[float]] | None = None) -> Path:
    """Save a model in the ``cnnspec train`` run-directory layout."""
    import keras
    import tensorflow as tf

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    meta = {
        "name": "digits",
        "input_shape": INPUT_SHAPE,
        "class_names": CLASS_NAMES,
        "preprocess": {"rescale": 1 / 255},
        "cnnspec_version": "0.1.0",
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
    (run_dir / "spec.yaml").write_text("name: digits\n")
    if history:
        keys = list(history)
        with open(run_dir / "history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", *keys])
            for i in range(len(history[keys[0]])):
                w.writerow([i + 1, *(history[k][i] for k in keys)])
    return run_dir


@functools.cache
def digits_run() -> Path:
    """A trained digits run directory (built once per session; treat as read-only)."""
    import keras

    x, y = digits_split("train")
    val = digits_split("val")
    model = build_digits_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    hist = model.fit(x, y, validation_data=val, epochs=10, batch_size=32, verbose=0)
    run = Path(tempfile.mkdtemp(prefix="cnnspec-test-run-")) / "runs" / "digits" / "20260101-000000"
    write_run_dir(run, model, hist.history)
    (run / "metrics.json").write_text(
        json.dumps({"val_accuracy": hist.history["val_accuracy"][-1]})
    )
    return run


def write_digit_pngs(folder: Path, indices: list[int]) -> list[Path]:
    """Write scikit-learn digits (by index) as 8x8 grayscale PNGs, named with their label."""
    from PIL import Image

    x, y = raw_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        p = folder / f"digit{i:04d}_label{y[i]}.png"
        Image.fromarray(x[i]).save(p)
        paths.append(p)
    return paths


def write_class_folders(root: Path, indices: list[int]) -> Path:
    """An image-folder dataset: ``root/<class>/*.png`` for the given digits indices."""
    _, y = raw_digits()
    for i in indices:
        write_digit_pngs(root / CLASS_NAMES[y[i]], [i])
    return root


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> np.ndarray:
    """A PNG's pixels (H, W, channels) after checking it is a complete, valid PNG file."""
    from PIL import Image

    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as im:
        im.verify()  # checks chunk CRCs: a truncated or corrupt file fails here
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def assert_not_blank(pixels: np.ndarray, min_colours: int = 16) -> None:
    """A picture with content: many distinct colours and real contrast, not a flat page."""
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) >= min_colours, f"only {len(colours)} colours"
    assert pixels.std() > 10, f"pixel std {pixels.std():.1f}: nearly flat"
    non_white = (pixels < 245).any(axis=-1).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of the picture is not white"


def run_cli(args: list[str]) -> int:
    """Run the cnnspec CLI in-process (as ``cnnspec ARGS``), returning its exit code."""
    from cnnspec.cli import main

    return main([str(a) for a in args])
