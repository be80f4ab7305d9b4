"""Hostile data, round two (issue 15, items 2, 7, 8): manifest rows that are not image files,
repeated or twice-labelled images, class-folder links, the data users really have (Excel's BOM,
phone photos' EXIF orientation, a class called train, '~user', '²')."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from test_data_sources import arrays

from cnnspec.data import load_data
from cnnspec.data.batches import labelled_batches
from cnnspec.errors import RunError

SHAPE = (8, 8, 3)


def images(root, classes=("a", "b"), n=4):
    from PIL import Image

    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = np.full((10, 10, 3), (40 + 90 * k + i) % 256, np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    return root


def manifest(tmp_path, extra="", header="", name="m.csv"):
    images(tmp_path / "p")
    rows = "".join(f"p/{c}/{i}.png,{c}\n" for c in "ab" for i in range(4))
    (tmp_path / name).write_text(header + rows + extra, encoding="utf-8")
    return str(tmp_path / name)


def refused(source, *words, **kwargs) -> str:
    with pytest.raises(RunError) as info:
        load_data(source, SHAPE, cache="none", **kwargs)
    text = str(info.value)
    assert all(w in text for w in words) and "\n" not in text, text
    return text


def _fifo(tmp):
    os.mkfifo(tmp / "pipe.png")
    return "pipe.png"


@pytest.mark.parametrize(
    ("row", "words"),
    [
        (lambda tmp: "/dev/zero", ["m.csv:9:", "/dev/zero", "not a regular file"]),
        (_fifo, ["m.csv:9:", "pipe.png", "not a regular file"]),
        (lambda tmp: "p/a", ["m.csv:9:", "is a folder"]),
        (lambda tmp: "p/a/0\0.png", ["m.csv:9:", "NUL"]),
        (lambda tmp: "p/a/missing.png", ["m.csv:9:", "not found", "missing.png"]),
    ],
)
def test_a_manifest_row_that_is_not_an_image_file_is_named_before_anything_is_read(
    tmp_path, row, words
):
    source = manifest(tmp_path, f"{row(tmp_path)},a\n")
    refused(source, *words)


def test_a_file_deleted_while_streaming_is_named_not_a_tensorflow_error(tmp_path):
    data = load_data(str(images(tmp_path / "p")), SHAPE, cache="none", test_split=0.25)
    os.remove(data.files[0])
    with pytest.raises(RunError) as info:
        for _ in labelled_batches(data, ["train", "val", "test"], SHAPE, 2, what="reading"):
            pass
    assert "image file not found" in str(info.value) and os.path.basename(data.files[0]) in str(
        info.value
    )


def test_a_non_utf8_file_name_is_read(tmp_path):
    root = images(tmp_path / "p")
    shutil.copy(root / "a" / "0.png", os.fsencode(root / "a") + b"/\xff.png")
    for cache in ("none", "memory"):
        data = load_data(str(root), SHAPE, cache=cache, validation_split=0, test_split=0)
        assert len(arrays(data.train)[1]) == 9


def test_repeated_rows_and_two_labels_are_refused_naming_both_rows(tmp_path):
    rows = "".join(f"p/{c}/{i}.png,{c}\n" for c in "ab" for i in range(4))
    refused(manifest(tmp_path, rows), "m.csv:9:", "listed twice", "line 1")
    # the same file by another spelling (./, a link): still the same image
    os.symlink(tmp_path / "p/b/3.png", tmp_path / "p/link.png")
    refused(manifest(tmp_path, "./p/b/../b/3.png,b\n"), "m.csv:9:", "line 8")
    refused(manifest(tmp_path, "p/link.png,a\n"), "m.csv:9:", "two labels", "'a' here", "'b'")


def test_excel_bom_header_and_a_superscript_label(tmp_path):
    source = manifest(tmp_path, header="\ufeffpath,label\n")
    assert load_data(source, SHAPE, cache="none").class_names == ["a", "b"]
    (tmp_path / "nums.csv").write_text("p/a/0.png,1\np/a/1.png,\u00b2\np/b/0.png,10\n")
    data = load_data(str(tmp_path / "nums.csv"), SHAPE, cache="none", validation_split=0)
    assert data.class_names == ["1", "10", "\u00b2"]  # names, sorted as text


def test_class_folder_links_never_read_other_classes_or_leave_the_data_folder(tmp_path):
    root = images(tmp_path / "p")
    os.symlink(root, root / "c")  # a class linked to its own data folder
    refused(str(root), "class folder", "/c", "holds the data folder itself")
    os.remove(root / "c")
    os.symlink("/", root / "c")
    refused(str(root), "/c", "outside the data folder")
    os.remove(root / "c")
    os.symlink(root / "a", root / "c")  # a second name for class a
    refused(str(root), "hold the same images")
    os.remove(root / "c")
    os.symlink(root / "a" / "loop.png", root / "a" / "loop.png")
    refused(str(root), "a/loop.png", "link that cannot be followed")
    os.remove(root / "a" / "loop.png")
    (tmp_path / "elsewhere").mkdir()
    shutil.move(root / "b", tmp_path / "elsewhere" / "b")
    os.symlink(tmp_path / "elsewhere" / "b", root / "b")
    refused(str(root), "outside the data folder")
    os.remove(root / "b")
    (root / ".store").mkdir()
    shutil.move(tmp_path / "elsewhere" / "b", root / ".store" / "b")
    os.symlink(root / ".store" / "b", root / "b")  # a link inside the data folder is fine
    data = load_data(str(root), SHAPE, cache="none", validation_split=0, test_split=0)
    assert data.class_names == ["a", "b"] and data.sizes["train"] == 8


def test_a_class_called_train_is_a_clear_error(tmp_path):
    root = images(tmp_path / "p", classes=("cat", "dog", "train"))
    refused(str(root), "train/ beside the class folders ['cat', 'dog']", "rename a class")


def test_cache_folder_of_an_unknown_user_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSPEC_CACHE", "~no_such_user_here/cache")
    refused_disk = pytest.raises(RunError, match="no user 'no_such_user_here'")
    with refused_disk:
        load_data(str(images(tmp_path / "p")), SHAPE, cache="disk")


def _jpeg(pixels, orientation, big_endian=False) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if not big_endian:
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(buf, "JPEG", quality=95, exif=exif)
        return buf.getvalue()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    plain = buf.getvalue()
    tiff = b"MM\0\x2a" + (8).to_bytes(4, "big") + (1).to_bytes(2, "big")
    tiff += b"\x01\x12\x00\x03" + (1).to_bytes(4, "big") + orientation.to_bytes(2, "big") + b"\0\0"
    tiff += b"\0\0\0\0"
    app1 = b"Exif\0\0" + tiff
    return plain[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + plain[2:]


@pytest.mark.parametrize("big_endian", [False, True])
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, big_endian):
    from PIL import Image, ImageOps

    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:8, :12], pixels[:8, 12:], pixels[8:, :12] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    root = tmp_path / "p"
    for k in range(1, 9):
        (root / f"o{k}").mkdir(parents=True)
        (root / f"o{k}" / "x.jpg").write_bytes(_jpeg(pixels, k, big_endian))
    data = load_data(str(root), (24, 24, 3), cache="none", validation_split=0, test_split=0)
    x, y = arrays(data.train)
    for k in range(1, 9):
        upright = ImageOps.exif_transpose(Image.open(root / f"o{k}" / "x.jpg")).convert("RGB")
        want = np.asarray(upright.resize((24, 24), Image.BILINEAR), np.float32)
        got = x[list(y).index(k - 1)].astype(np.float32)
        assert np.abs(got - want).mean() < 12, (k, np.abs(got - want).mean())
    # a quarter turn really turned it: orientation 6 differs from the stored image
    assert not np.allclose(x[list(y).index(5)], x[list(y).index(0)], atol=30)
