"""Decompression bombs: an image file whose header announces more pixels than cnnspec decodes.

A 389 KB PNG of zeros can say 20,000 x 20,000 and take 2 GB of memory to decode (measured with
tf.io.decode_image); a folder of them decoded in parallel exhausts a machine. The header is read
first (in the tf.data graph and, for a line naming the file, by PIL), so such a file is refused
before any pixel is decoded.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnspec.data import load_data
from cnnspec.data.images import MAX_IMAGE_PIXELS, decode_file, header_pixels
from cnnspec.errors import RunError


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header (IHDR with a valid CRC) over a few rows of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def _saved(fmt: str, size=(37, 23)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buf, fmt)
    return buf.getvalue()


def jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(_saved("JPEG"))
    sof = data.index(b"\xff\xc0")  # baseline SOF0: length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(_saved("GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(_saved("BMP"))
    data[18:26] = struct.pack("<ii", width, -height)  # a negative height: top-down rows
    return bytes(data)


BOMBS = {
    "png": lambda: png_claiming(100_000, 100_000),  # 10 G pixels: 30 GB as RGB
    "jpg": lambda: jpeg_claiming(65_000, 65_000),
    "gif": lambda: gif_claiming(65_000, 65_000),
    "bmp": lambda: bmp_claiming(20_000, 20_000),
}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_header_pixels_reads_every_format_exactly(fmt):
    import tensorflow as tf

    assert int(header_pixels(tf.constant(_saved(fmt, (37, 23))))) == 37 * 23


def test_header_pixels_of_the_crafted_bombs():
    import tensorflow as tf

    assert int(header_pixels(tf.constant(png_claiming(100_000, 100_000)))) == 10**10
    assert int(header_pixels(tf.constant(jpeg_claiming(65_000, 64_000)))) == 65_000 * 64_000
    assert int(header_pixels(tf.constant(gif_claiming(65_000, 2)))) == 130_000
    assert int(header_pixels(tf.constant(bmp_claiming(20_000, 3)))) == 60_000
    assert int(header_pixels(tf.constant(b"not an image"))) == 0  # left to the decoder


@pytest.mark.parametrize("ext", sorted(BOMBS))
def test_a_bomb_is_refused_by_name_before_decoding(tmp_path, ext):
    path = tmp_path / f"huge.{ext}"
    path.write_bytes(BOMBS[ext]())
    with pytest.raises(RunError) as info:
        decode_file(path, (16, 16, 3))
    text = str(info.value)
    assert "huge." + ext in text and "pixels" in text and "\n" not in text, text


def test_a_bomb_in_a_class_folder_is_named_not_decoded(tmp_path):
    """The tf.data pipeline checks the header too: without it, decoding this one file would
    allocate 30 GB; with it, the data set stops at the file and names it."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "zz_bomb.png").write_bytes(BOMBS["png"]())
    with pytest.raises(RunError) as info:
        load_data(str(tmp_path), (16, 16, 3), validation_split=0.25, test_split=0.25)
    text = str(info.value)
    assert "zz_bomb.png" in text and "pixels" in text, text


def test_an_image_at_the_limit_is_not_refused_by_its_header(tmp_path):
    side = int(MAX_IMAGE_PIXELS**0.5)  # just under the limit: the header check lets it pass
    path = Path(tmp_path / "big.png")
    path.write_bytes(png_claiming(side, side))
    with pytest.raises(RunError) as info:  # it fails later, as a truncated PNG, not as a bomb
        decode_file(path, (16, 16, 3))
    assert "pixels" not in str(info.value), info.value
