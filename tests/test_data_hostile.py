"""Hostile data (issue 9): every bad .npz or data path is one clear line, never a silent
wrong result; the pixel-scaling rule is explicit and said."""

from __future__ import annotations

import os

import numpy as np
import pytest

from cnnspec.cli import main
from cnnspec.data import load_data
from cnnspec.errors import RunError

SHAPE = (8, 8, 1)


def npz(tmp_path, x, y=None, **extra):
    path = tmp_path / "d.npz"
    y = np.repeat(np.arange(2), len(x) // 2 + 1)[: len(x)] if y is None else y
    np.savez(path, x=x, y=y, **extra)
    return str(path)


def unit_images(n=20):
    return np.random.default_rng(0).random((n, 8, 8)).astype(np.float32)


def refused(source, *words, **kwargs) -> str:
    with pytest.raises(RunError) as info:
        load_data(source, SHAPE, **kwargs)
    text = str(info.value)
    assert all(w in text for w in words) and "\n" not in text, text
    return text


def test_one_nan_pixel_is_refused_with_its_index(tmp_path):
    x = unit_images()
    x[3, 4, 5] = np.nan
    refused(npz(tmp_path, x), "pixels must be finite", "x[3, 4, 5, 0] = nan")
    x[3, 4, 5] = np.inf
    refused(npz(tmp_path, x), "pixels must be finite", "x[3, 4, 5, 0] = inf")


def test_one_stray_value_above_one_is_not_silently_read_as_0_255(tmp_path):
    x = unit_images()
    x[7, 1, 2] = 1.0001
    refused(npz(tmp_path, x), "look like [0, 1]", "x[7, 1, 2, 0]", "ambiguous")


def test_the_scaling_rule_is_applied_and_said(tmp_path):
    lines: list[str] = []
    x = unit_images()
    data = load_data(npz(tmp_path, x), SHAPE, echo=lines.append)
    assert "in [0, 1]: multiplied by 255" in " ".join(data.notes)
    assert any("multiplied by 255" in line for line in lines)
    train = np.concatenate([b[0] for b in data.train.batch(64).as_numpy_iterator()])
    assert train.max() > 200  # really scaled
    data = load_data(npz(tmp_path, x * 255.0), SHAPE)
    assert "in [0, 255]" in " ".join(data.notes) and "used as they are" in " ".join(data.notes)
    data = load_data(npz(tmp_path, (x * 255).astype(np.uint8)), SHAPE)
    assert "uint8 in [0, 255]" in " ".join(data.notes)
    refused(npz(tmp_path, x * 300.0), "pixels must be in [0, 1] or [0, 255]")
    refused(npz(tmp_path, x - 0.5), "pixels must be in [0, 1] or [0, 255]")
    big = np.full((4, 8, 8), 300, np.int32)
    refused(npz(tmp_path, big), "x[0, 0, 0, 0] = ")


def test_string_pixels_are_one_line(tmp_path):
    refused(npz(tmp_path, np.array([["a", "b"], ["c", "d"]])), "x must hold pixel values", "<U1")


def test_zero_size_images_are_named(tmp_path):
    source = npz(tmp_path, np.zeros((4, 0, 0, 1), np.uint8))
    refused(source, "d.npz", "zero size", "(4, 0, 0, 1)")


def test_negative_label_names_its_index(tmp_path):
    y = np.array([0, 1] * 9 + [-1, 0])
    text = refused(npz(tmp_path, unit_images(), y), "y[18] is -1", "class indices")
    assert "dtype" not in text


def test_float_labels_say_what_is_wanted(tmp_path):
    refused(npz(tmp_path, unit_images(), np.zeros(20)), "integer class indices", "float64")


def test_empty_npz_says_it_holds_no_images(tmp_path):
    text = refused(npz(tmp_path, np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64)), "no images")
    assert "dense layer" not in text
    text = refused(
        npz(tmp_path, np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64)),
        "no images",
        num_classes=10,
    )
    assert "dense layer" not in text


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: "/proc", ["/proc", "system folder"]),
        (lambda tmp: "/proc/self/status", ["system folder"]),
        (
            lambda tmp: "/etc/hostname",
            ["is not a data source", "an image folder", "a CSV manifest"],
        ),
        (lambda tmp: str(tmp / "nothing"), ["data folder not found"]),
        (lambda tmp: _fifo(tmp), ["fifo", "is not a data source"]),
        (lambda tmp: _bad_npz(tmp), ["cannot read", "bad.npz"]),
    ],
)
def test_non_data_paths_are_one_line_naming_the_path(tmp_path, make, words):
    source = make(tmp_path)
    text = refused(source, *words)
    assert source in text


def _fifo(tmp):
    path = tmp / "fifo"
    os.mkfifo(path)
    return str(path)


def _bad_npz(tmp):
    path = tmp / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return str(path)


@pytest.mark.parametrize("data", ["/proc", "nan"])
def test_train_with_hostile_data_exits_1_with_one_line(tmp_path, capsys, data):
    if data == "nan":
        x = unit_images()
        x[0, 0, 0] = np.nan
        data = npz(tmp_path, x)
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ninput: [8, 8, 1]\nlayers:\n  - flatten\n  - dense: 2, softmax\n")
    code = main(["train", str(spec), "--data", data, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert ("system folder" in err) or ("x[0, 0, 0, 0] = nan" in err), err


@pytest.mark.parametrize("reader", ["read_npz", "read_npz_table"])
def test_object_arrays_are_refused_alike_by_both_npz_readers(tmp_path, reader):
    """Class labels (read_npz) and label tables (multi-label, regression: read_npz_table) open an
    .npz through one function: an object array is never unpickled, and says so."""
    from cnnspec.data import arrays, tables

    path = tmp_path / "objects.npz"
    np.savez(path, x=unit_images(4), y=np.array([{"a": 1}, 2, "3", None], dtype=object))
    read = getattr(arrays, reader, None) or getattr(tables, reader)
    with pytest.raises(RunError) as info:
        read(str(path))
    text = str(info.value)
    assert "Python objects" in text and "objects.npz" in text and "\n" not in text, text
