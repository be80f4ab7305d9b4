"""cnnspec.data: real sources (digits, generated image folders, .npz), conversion, clear errors."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cnnspec.data import load_data, load_images, make_pipeline
from cnnspec.errors import RunError

COLOURS = {"blue": (20, 40, 230), "green": (30, 220, 40), "red": (230, 30, 20)}


def arrays(ds):
    xs, ys = zip(*ds.batch(4096).as_numpy_iterator(), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def write_images(folder, n=6, size=(20, 28), fmt="png", colours=COLOURS):
    """A class folder per colour: noisy images of that colour (learnable, real files)."""
    import keras

    rng = np.random.default_rng(0)
    for name, rgb in colours.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = np.clip(np.array(rgb) + rng.normal(0, 10, (*size, 3)), 0, 255).astype("uint8")
            keras.utils.save_img(folder / name / f"{i}.{fmt}", img)
    return folder


def test_digits_split_is_deterministic_complete_and_converted():
    a = load_data("digits", (32, 32, 1), seed=1)
    b = load_data("digits", (32, 32, 1), seed=2)  # the split does not follow the training seed
    assert sum(a.sizes.values()) == 1797
    assert a.sizes == {"train": 1259, "val": 269, "test": 269}
    xa, ya = arrays(a.test)
    xb, yb = arrays(b.test)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert xa.shape == (269, 32, 32, 1) and xa.dtype == np.float32
    assert xa.min() == 0.0 and xa.max() == pytest.approx(255.0)
    assert sorted(set(ya.tolist())) == list(range(10))  # stratified: every class in test
    xt, _ = arrays(a.train)
    # no test image is also a training image
    train_keys = {x.tobytes() for x in xt}
    assert sum(x.tobytes() in train_keys for x in xa) <= 2  # digits has a few exact duplicates


def test_digits_to_rgb_and_other_sizes():
    d = load_data("digits", (20, 24, 3), validation_split=0.1, test_split=0.2)
    x, _ = arrays(d.val)
    assert x.shape[1:] == (20, 24, 3)
    assert np.array_equal(x[..., 0], x[..., 2])  # gray -> RGB repeats the channel
    assert d.sizes["test"] == pytest.approx(0.2 * 1797, abs=10)


def test_image_folder_with_split(tmp_path):
    write_images(tmp_path, n=10)
    d = load_data(str(tmp_path), (16, 16, 3), validation_split=0.2, test_split=0.2)
    assert d.class_names == ["blue", "green", "red"]
    assert d.sizes == {"train": 18, "val": 6, "test": 6}
    x, y = arrays(d.train)
    assert x.shape == (18, 16, 16, 3)
    # the colour survives decoding, resizing and the label mapping
    assert all(np.argmax(x[i].mean(axis=(0, 1))) == [2, 1, 0][y[i]] for i in range(len(y)))


def test_image_folder_with_train_val_test_subfolders_and_grayscale(tmp_path):
    write_images(tmp_path / "train", n=4, fmt="jpg")
    write_images(tmp_path / "val", n=2, fmt="bmp")
    write_images(tmp_path / "test", n=3)
    d = load_data(str(tmp_path), (8, 8, 1))
    assert d.sizes == {"train": 12, "val": 6, "test": 9}
    x, y = arrays(d.test)
    assert x.shape == (9, 8, 8, 1)
    # luminance of pure-ish green is higher than of blue
    assert x[y == 1].mean() > x[y == 0].mean()


def test_load_images_matches_the_training_pipeline(tmp_path):
    write_images(tmp_path, n=1, size=(40, 30))
    files = sorted(tmp_path.glob("*/*.png"))
    x, names = load_images(files, (12, 12, 3))
    assert x.shape == (3, 12, 12, 3) and x.dtype == np.float32 and names == [str(f) for f in files]
    d = load_data(str(tmp_path), (12, 12, 3), validation_split=0.0, test_split=0.0)
    xt, yt = arrays(d.train)
    assert yt.tolist() == [0, 1, 2]  # same file order: blue, green, red
    np.testing.assert_allclose(x, xt, atol=1e-4)


def test_npz_source(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 10, 10), dtype=np.uint8)
    y = np.repeat(np.arange(3), 20)
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    d = load_data(str(tmp_path / "d.npz"), (10, 10, 1), validation_split=0.2, test_split=0.0)
    assert d.class_names == ["a", "b", "c"] and d.sizes == {"train": 48, "val": 12, "test": 0}
    assert d.test is None
    xt, yt = arrays(d.train)
    assert xt.max() > 200  # uint8 kept in [0, 255]
    # one-hot labels and a [0, 1] float array are accepted and normalised
    np.savez(tmp_path / "f.npz", x=(x / 255.0).astype("float32"), y=np.eye(3)[y])
    f = load_data(str(tmp_path / "f.npz"), (10, 10, 1))
    xf, _ = arrays(f.train)
    assert xf.max() > 200 and f.num_classes == 3
    # a column of class indices (N, 1) is not one-hot (it was read as all class 0)
    np.savez(tmp_path / "c.npz", x=x, y=y[:, None])
    c = load_data(str(tmp_path / "c.npz"), (10, 10, 1), validation_split=0.0, test_split=0.0)
    assert c.num_classes == 3 and sorted(arrays(c.train)[1].tolist()) == sorted(y.tolist())


def test_pipeline_batches_repeats_and_augments_training_only():
    import tensorflow as tf

    from cnnspec.spec.train import TrainSpec

    d = load_data("digits", (16, 16, 1))
    augment = TrainSpec.model_validate({"augment": [{"rotate": 0.2}, {"zoom": 0.2}]}).augment
    plain = make_pipeline(d.val, 32, training=False, augment=augment)
    batches = list(plain)
    assert [b[0].shape[0] for b in batches] == [32] * 8 + [13]
    x_val, _ = arrays(d.val)
    assert np.array_equal(np.concatenate([b[0] for b in batches]), x_val)  # no augmentation
    train = make_pipeline(d.train, 32, training=True, augment=augment, seed=3, repeat=True)
    assert train.cardinality() == tf.data.INFINITE_CARDINALITY
    x_aug = next(iter(train))[0].numpy()
    x_raw = next(iter(make_pipeline(d.train, 32, training=True, seed=3)))[0].numpy()
    assert x_aug.shape == x_raw.shape == (32, 16, 16, 1)
    assert not np.allclose(x_aug, x_raw)  # augmented (same shuffle seed, same images)


@pytest.mark.parametrize(
    ("setup", "kwargs", "words"),
    [
        ("missing", {}, "data folder not found"),
        ("empty_class", {}, "has no images"),
        ("corrupt", {}, "corrupt or unsupported image file"),
        ("no_classes", {}, "no class sub-folders"),
        ("ok", {"num_classes": 5}, "has 3 classes but the spec's final layer has 5 units"),
        ("ok", {"input_shape": (16, 16, 2)}, "cannot take images"),
        ("ok", {"input_shape": (16, 3)}, "cannot take images"),
    ],
)
def test_bad_data_is_one_clear_line(tmp_path, setup, kwargs, words):
    root = tmp_path / "data"
    if setup != "missing":
        root.mkdir()
    if setup in ("ok", "empty_class", "corrupt"):
        write_images(root, n=3)
    if setup == "empty_class":
        (root / "yellow").mkdir()
    if setup == "corrupt":
        (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    shape = kwargs.pop("input_shape", (16, 16, 3))
    with pytest.raises(RunError) as info:
        load_data(str(root), shape, **kwargs)
    text = str(info.value)
    assert words in text and "\n" not in text, text
    if setup == "corrupt":
        assert "broken.png" in text


def test_missing_image_for_prediction_is_named(tmp_path):
    with pytest.raises(RunError, match="nope.png"):
        load_images([tmp_path / "nope.png"], (8, 8, 1))
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    with pytest.raises(RunError, match="bad.jpg"):
        load_images([tmp_path / "bad.jpg"], (8, 8, 1))


def test_named_dataset_fails_fast_offline(tmp_path, monkeypatch):
    from cnnspec.data.arrays import online as _online

    if _online():
        pytest.skip("network reachable: the offline path cannot be exercised here")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached
    start = time.monotonic()
    with pytest.raises(RunError, match="cannot download dataset 'cifar10'"):
        load_data("cifar10", (32, 32, 3))
    assert time.monotonic() - start < 15
