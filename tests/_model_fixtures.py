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
    from cnnspec.versions import Versions

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    meta = {
        "name": "digits",
        "input_shape": INPUT_SHAPE,
        "class_names": CLASS_NAMES,
        "preprocess": {"rescale": 1 / 255},
        "versions": Versions.current().to_dict(),
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


# --- reference networks written by hand in Keras, and the layer-by-layer weight copy ----------


def weighted_layers(model) -> list:
    """The layers that hold weights, in order, nested models (Sequential stems) flattened."""
    import keras

    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out.extend(weighted_layers(layer))
        elif layer.weights:
            out.append(layer)
    return out


#: Layers whose freshly initialised weights are constants (gamma 1, beta 0, 1e-6): perturbed
#: after the copy so the output comparison exercises them too.
_PERTURBED = {"BatchNormalization", "LayerNormalization", "LayerScale"}


def copy_weights(ours, ref, seed: int = 0) -> None:
    """Copy ``ref``'s weights into ``ours`` layer by layer (same classes, same weight shapes)."""
    a_layers, b_layers = weighted_layers(ours), weighted_layers(ref)
    assert len(a_layers) == len(b_layers), (len(a_layers), len(b_layers))
    rng = np.random.default_rng(seed)
    for a, b in zip(a_layers, b_layers, strict=True):
        assert type(a).__name__ == type(b).__name__, (a.name, b.name)
        assert [w.shape for w in a.weights] == [w.shape for w in b.weights], (a.name, b.name)
        weights = b.get_weights()
        if type(b).__name__ in _PERTURBED:
            weights = [w + rng.uniform(0.1, 0.5, w.shape).astype(w.dtype) for w in weights]
            b.set_weights(weights)
        a.set_weights(weights)


def keras_unet(input_shape=(572, 572, 1), classes: int = 2):
    """U-Net as in Ronneberger et al. 2015, Fig. 1, written directly in Keras."""
    import keras

    layers = keras.layers

    def double(x, n):
        x = layers.Conv2D(n, 3, activation="relu")(x)
        return layers.Conv2D(n, 3, activation="relu")(x)

    inp = keras.Input(input_shape)
    x, skips = inp, []
    for i, n in enumerate((64, 128, 256, 512)):
        if i:
            x = layers.MaxPooling2D(2)(x)
        x = double(x, n)
        skips.append(x)
    x = double(layers.MaxPooling2D(2)(x), 1024)
    for n, skip in zip((512, 256, 128, 64), reversed(skips), strict=True):
        up = layers.Conv2DTranspose(n, 2, strides=2)(x)
        crop = (skip.shape[1] - up.shape[1]) // 2
        x = double(layers.Concatenate()([layers.Cropping2D(crop)(skip), up]), n)
    return keras.Model(inp, layers.Conv2D(classes, 1, activation="softmax")(x))


def keras_shufflenet(groups: int = 3, classes: int = 1000):
    """ShuffleNet v1 1x (Zhang et al. 2017, Table 1) written directly in Keras; the channel
    shuffle as reshape / transpose / reshape ops."""
    import keras
    from keras import ops

    layers = keras.layers
    g = groups

    def shuffle(x):
        h, w, c = x.shape[1:]
        x = ops.reshape(x, (-1, h, w, g, c // g))
        return ops.reshape(ops.transpose(x, (0, 1, 2, 4, 3)), (-1, h, w, c))

    def branch(x, m, n, s, g1):
        x = layers.Conv2D(m, 1, groups=g1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = shuffle(x)
        x = layers.DepthwiseConv2D(3, strides=s, use_bias=False)(layers.ZeroPadding2D(1)(x))
        x = layers.BatchNormalization()(x)
        x = layers.Conv2D(n, 1, groups=g, use_bias=False)(x)
        return layers.BatchNormalization()(x)

    inp = keras.Input((224, 224, 3))
    x = layers.Conv2D(24, 3, strides=2, use_bias=False)(layers.ZeroPadding2D(1)(inp))
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D(3, 2)(layers.ZeroPadding2D(1)(x))
    for stage, (cout, repeat) in enumerate(((240, 4), (480, 8), (960, 4))):
        cin = x.shape[-1]
        short = layers.AveragePooling2D(3, 2)(layers.ZeroPadding2D(1)(x))
        y = branch(x, cout // 4, cout - cin, 2, 1 if stage == 0 else g)
        x = layers.ReLU()(layers.Concatenate()([short, y]))
        for _ in range(repeat - 1):
            x = layers.ReLU()(layers.Add()([x, branch(x, cout // 4, cout, 1, g)]))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(classes, activation="softmax")(x))
