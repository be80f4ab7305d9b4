"""Data larger than memory: uint8 caches in memory / on disk / none, how auto chooses, CSV
manifests, the os.scandir scan, the fused decode-and-crop, progress lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_data_sources import arrays, write_images

from cnnspec.data import load_data, make_pipeline
from cnnspec.data.cache import parse_size
from cnnspec.data.scan import image_files, read_manifest
from cnnspec.errors import RunError

SHAPE = (12, 12, 3)
MODES = ["memory", "disk", "none"]


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CNNSPEC_CACHE", str(folder))
    monkeypatch.delenv("CNNSPEC_CACHE_BUDGET", raising=False)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("photos"), n=8, size=(30, 26), fmt="jpg")


def load(root, cache, **kwargs):
    lines: list[str] = []
    data = load_data(str(root), SHAPE, cache=cache, echo=lines.append, **kwargs)
    return data, lines


@pytest.mark.parametrize("mode", MODES)
def test_every_cache_mode_yields_the_same_uint8_images(photos, cache_dir, mode):
    reference, _ = load(photos, "memory")
    data, lines = load(photos, mode)
    assert data.cache == mode
    assert any(line.startswith("cache: ") and mode[:4] in line for line in lines), lines
    for split in ("val", "test"):  # unshuffled splits: same order in every mode
        x, y = arrays(data.split(split))
        x_ref, y_ref = arrays(reference.split(split))
        assert x.dtype == np.uint8 and x.shape[1:] == SHAPE
        assert np.array_equal(x, x_ref) and np.array_equal(y, y_ref)
    x, y = arrays(data.train)  # the streamed train split is reshuffled: compare as sets
    x_ref, y_ref = arrays(reference.train)
    key = lambda xs, ys: sorted(a.tobytes() + bytes([b]) for a, b in zip(xs, ys, strict=True))  # noqa: E731
    assert key(x, y) == key(x_ref, y_ref)
    batch = next(iter(make_pipeline(data.train, 4, training=True)))[0]
    assert batch.dtype.name == "float32" and float(batch.numpy().max()) > 100  # model's input


def test_disk_cache_is_reused_keyed_by_file_list_and_written_atomically(photos, cache_dir):
    first, lines = load(photos, "disk")
    folders = sorted(p for p in cache_dir.iterdir())
    assert [p.name.startswith(".") for p in folders] == [False] * 3  # train/val/test, no temp
    info = json.loads((folders[0] / "info.json").read_text())
    assert info["input"] == list(SHAPE) and info["images"] > 0
    assert not any("reusing" in line for line in lines)
    second, lines = load(photos, "disk")
    assert sum("reusing the disk cache" in line for line in lines) == 3, lines
    assert np.array_equal(arrays(first.test)[0], arrays(second.test)[0])
    # Another input size or another file list is another cache; deleting it is safe.
    load_data(str(photos), (10, 10, 3), cache="disk")
    assert len(list(cache_dir.iterdir())) == 6
    for folder in cache_dir.iterdir():
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    _, lines = load(photos, "disk")
    assert not any("reusing" in line for line in lines)


def test_auto_chooses_memory_then_disk_then_streaming_by_budget_and_room(
    photos, cache_dir, tmp_path, monkeypatch
):
    data, lines = load(photos, "auto")
    assert data.cache == "memory" and "fits the memory budget" in lines[1]
    monkeypatch.setenv("CNNSPEC_CACHE_BUDGET", "1K")
    data, lines = load(photos, "auto")
    assert data.cache == "disk" and "over the memory budget 1.0 KB" in lines[1], lines
    assert str(cache_dir) in lines[1] and cache_dir.is_dir()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CNNSPEC_CACHE", str(blocker / "cache"))  # cannot be created
    data, lines = load(photos, True)  # true is auto
    assert data.cache == "none" and "streaming from the files" in lines[1], lines
    data, _ = load(photos, False)
    assert data.cache == "none"
    monkeypatch.setenv("CNNSPEC_CACHE_BUDGET", "lots")
    with pytest.raises(RunError, match="CNNSPEC_CACHE_BUDGET must be a size"):
        load(photos, "auto")


def test_sizes_parse():
    assert parse_size("8G") == 8 * 1024**3
    assert parse_size("1.5 GiB") == int(1.5 * 1024**3)
    assert parse_size("512m") == 512 * 1024**2 and parse_size("1000") == 1000
    with pytest.raises(ValueError):
        parse_size("-1G")


@pytest.mark.parametrize("mode", MODES)
def test_a_corrupt_file_is_named_in_every_cache_mode(tmp_path, cache_dir, mode):
    root = write_images(tmp_path / "imgs", n=4, fmt="jpg")
    (root / "green" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(RunError, match=r"corrupt or unsupported image file .*bad\.jpg") as info:
        data = load_data(str(root), SHAPE, cache=mode)
        # streaming: nothing is decoded up front; training fails, then diagnose names the file
        with pytest.raises(Exception):  # noqa: B017 - TensorFlow's error, whatever its class
            for _ in data.train.batch(64):
                pass
        data.diagnose(SHAPE)
    assert "\n" not in str(info.value) and "[Op:" not in str(info.value)
    assert not [p for p in (cache_dir.iterdir() if cache_dir.exists() else []) if p.name[0] == "."]


def test_streamed_training_split_reshuffles_every_epoch_deterministically(photos, cache_dir):
    data, _ = load(photos, "none", seed=5)
    epochs = [arrays(data.train)[1].tolist() for _ in range(2)]
    assert epochs[0] != epochs[1] and sorted(epochs[0]) == sorted(epochs[1])
    again, _ = load(photos, "none", seed=5)
    assert [arrays(again.train)[1].tolist() for _ in range(2)] == epochs


def test_fused_random_resized_crop_is_seeded_and_crops(tmp_path, cache_dir):
    import keras
    import tensorflow as tf

    from cnnspec.data.images import decode_random_crop

    # left half black, right half white: crops differ in brightness, whole images do not
    pixels = np.zeros((60, 80, 3), np.uint8)
    pixels[:, 40:] = 255
    keras.utils.save_img(tmp_path / "half.jpg", pixels, quality=95)
    keras.utils.save_img(tmp_path / "half.png", pixels)
    for name in ("half.jpg", "half.png"):  # JPEG: fused decode-and-crop; PNG: decode, slice
        raw = tf.io.read_file(str(tmp_path / name))
        crops = [
            decode_random_crop(raw, SHAPE, tf.constant([s, 1], tf.int64), (0.1, 0.3), (0.75, 1.33))
            for s in range(8)
        ]
        means = [float(tf.reduce_mean(tf.cast(c, tf.float32))) for c in crops]
        assert all(c.shape == SHAPE and c.dtype == tf.uint8 for c in crops)
        assert min(means) < 60 and max(means) > 195, means  # some all-dark, some all-light
        same = decode_random_crop(
            raw, SHAPE, tf.constant([3, 1], tf.int64), (0.1, 0.3), (0.75, 1.33)
        )
        assert np.array_equal(same.numpy(), crops[3].numpy())

    # On the path users take: a streamed training split crops while decoding, per epoch
    root = write_images(tmp_path / "imgs", n=4, size=(40, 40), fmt="jpg")
    crop = ((0.2, 0.5), (0.75, 1.33))
    data, _ = load(root, "none", crop=crop, seed=1)
    a, b = arrays(data.train)[0], arrays(data.train)[0]
    assert a.shape[1:] == SHAPE and not np.array_equal(a, b)
    cached, _ = load(root, "memory", crop=crop)  # cached: the crop is the pipeline's business
    assert np.array_equal(arrays(cached.train)[0], arrays(cached.train)[0])


def test_csv_manifest_with_and_without_header(tmp_path, cache_dir):
    root = write_images(tmp_path / "pool", n=5, fmt="png")
    rows = [(f"pool/{c}/{i}.png", c) for c in ("red", "blue") for i in range(5)]
    (tmp_path / "with_header.csv").write_text(
        "label,path\n" + "".join(f"{c},{p}\n" for p, c in rows)
    )
    (tmp_path / "plain.csv").write_text("".join(f"{p},{c}\n" for p, c in rows) + "\n")
    for name in ("with_header.csv", "plain.csv"):
        data = load_data(str(tmp_path / name), SHAPE, validation_split=0.2, test_split=0.0)
        assert data.class_names == ["blue", "red"] and data.sizes["train"] == 8
        x, y = arrays(data.train)
        # the label follows the row, not the folder name order: blue images are blue
        assert all(np.argmax(x[i].mean(axis=(0, 1))) == [2, 0][y[i]] for i in range(len(y)))
    assert root.is_dir()
    # integer labels keep numeric order: 2 before 10
    (tmp_path / "nums.csv").write_text("pool/red/0.png,10\npool/red/1.png,2\n")
    assert read_manifest(tmp_path / "nums.csv")[0] == ["2", "10"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("path,label\npool/red/0.png\n", "with_bad.csv:2: a manifest row needs a path and a label"),
        ("path,label\n", "lists no images"),
        ("pool/red/0.png,red\npool/red/missing.png,red\n" * 3, "missing.png"),
    ],
)
def test_bad_manifest_is_one_line_naming_the_row_or_file(tmp_path, cache_dir, text, words):
    write_images(tmp_path / "pool", n=1)
    (tmp_path / "with_bad.csv").write_text(text)
    with pytest.raises(RunError) as info:
        load_data(str(tmp_path / "with_bad.csv"), SHAPE, validation_split=0.0, test_split=0.0)
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_scan_lists_images_only_skips_hidden_and_does_not_follow_folder_links(tmp_path):
    for rel in ("a/1.png", "a/deep/2.JPG", "a/notes.txt", "a/.hidden.png", ".git/x.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "a" / "loop")  # a link back up: must not be walked
    found = [Path(p).relative_to(tmp_path).as_posix() for p in image_files(tmp_path)]
    assert found == ["a/1.png", "a/deep/2.JPG"]


def test_progress_is_one_summary_line_off_a_terminal_and_a_bar_on_one(capsys):
    from cnnspec.data.progress import progress

    lines: list[str] = []
    with progress("caching", 10, echo=lines.append, tty=False) as bar:
        for _ in range(10):
            bar.advance()
    assert len(lines) == 1 and lines[0].startswith("caching: 10 images in ") and "/s)" in lines[0]
    with progress("caching", 10, echo=lines.append, tty=True) as bar:
        bar.advance(10)
    assert len(lines) == 1  # on a terminal the bar says it
    assert "10/10" in capsys.readouterr().err


def test_cnnspec_train_on_a_disk_cache_says_so_learns_and_reuses_it(
    tmp_path, cache_dir, capsys, monkeypatch
):
    """The path users take when the data is over the memory budget: `cnnspec train`."""
    from cnnspec.cli import main

    root = write_images(tmp_path / "imgs", n=12, size=(24, 20), fmt="jpg")
    spec = tmp_path / "colours.yaml"
    spec.write_text(
        "name: colours\ninput: [12, 12, 3]\nlayers:\n  - conv: 3x3, 4, relu\n  - gavgpool\n"
        "  - dense: 3, softmax\ntrain:\n  optimizer: {adam: {lr: 0.05}}\n  batch_size: 8\n"
    )
    monkeypatch.setenv("CNNSPEC_CACHE_BUDGET", "1K")
    outputs = []
    for run in ("run1", "run2"):
        args = ["train", str(spec), "--data", str(root), "--out", str(tmp_path / run)]
        assert main([*args, "--epochs", "15", "--quiet"]) == 0
        outputs.append(capsys.readouterr().out.splitlines())
        metrics = json.loads((tmp_path / run / "metrics.json").read_text())
        assert metrics["test"]["accuracy"] == 1.0, metrics["test"]
    first = outputs[0]
    assert first[1].startswith("cache: on disk in ") and "over the memory budget" in first[1]
    assert any(line.startswith("caching train split on disk: ") for line in first[:8])
    assert sum("reusing the disk cache" in line for line in outputs[1][:8]) == 3
    assert len(list(cache_dir.iterdir())) == 3


def test_train_with_random_resized_crop_on_a_streamed_split_crops_while_decoding(
    tmp_path, cache_dir, capsys
):
    """`cnnspec train` with cache: none and random_resized_crop: the fused decode path."""
    from cnnspec.cli import main
    from cnnspec.data import decode_crop
    from cnnspec.spec.train import AugmentSpec, TrainSpec

    if "random_resized_crop" not in AugmentSpec.model_fields:
        pytest.skip("the random_resized_crop augmentation kind is not in this checkout")
    recipe = {"augment": [{"random_resized_crop": {"scale": [0.5, 1.0]}}]}
    assert decode_crop(TrainSpec.model_validate(recipe).augment) == ((0.5, 1.0), (0.75, 4 / 3))
    root = write_images(tmp_path / "imgs", n=12, size=(24, 20), fmt="jpg")
    spec = tmp_path / "colours.yaml"
    spec.write_text(
        "name: colours\ninput: [12, 12, 3]\nlayers:\n  - conv: 3x3, 4, relu\n  - gavgpool\n"
        "  - dense: 3, softmax\ntrain:\n  optimizer: {adam: {lr: 0.05}}\n  batch_size: 8\n"
        "  cache: none\n  augment: [{random_resized_crop: {scale: [0.5, 1.0]}}]\n"
    )
    args = ["train", str(spec), "--data", str(root), "--out", str(tmp_path / "run")]
    assert main([*args, "--epochs", "15", "--quiet"]) == 0
    assert "cache: none (streaming)" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # colours survive the crops
