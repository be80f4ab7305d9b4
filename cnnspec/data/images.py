"""Image decoding and conversion to a spec's input: the same code for training and prediction."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import RunError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_errors() -> tuple[type[Exception], ...]:
    """The TensorFlow errors a data set raises when a file goes bad while it is read (corrupt,
    deleted, unreadable, a damaged cache): callers turn them into a RunError naming the file."""
    import tensorflow as tf

    e = tf.errors
    return (
        e.InvalidArgumentError, e.UnknownError, e.NotFoundError, e.PermissionDeniedError,
        e.DataLossError, e.FailedPreconditionError, e.OutOfRangeError,
    )  # fmt: skip


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """(H, W, C) of a spec input that can take images, or RunError."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise RunError(
            f"the spec's input {shape} cannot take images",
            hint="image data needs input: [height, width, 1] (grayscale) or [height, width, 3] (RGB)",
        )
    return shape  # type: ignore[return-value]


def convert(images, input_shape: Sequence[int]):
    """Resize and channel-convert an image or a batch (any numeric dtype, values in [0, 255]).

    uint8 in, uint8 out (rounded after resizing): decoded images stay 1 byte per value until
    the model. Other dtypes come out as float32. Graph-safe (used inside tf.data maps); the
    channel count of ``images`` must be static.
    """
    import tensorflow as tf

    height, width, channels = check_input_shape(input_shape)
    as_uint8 = images.dtype == tf.uint8
    x = images if as_uint8 else tf.cast(images, tf.float32)
    have = x.shape[-1]
    if have == 4:  # drop alpha
        x = x[..., :3]
        have = 3
    if have == 1 and channels == 3:
        x = tf.image.grayscale_to_rgb(x)
    elif have == 3 and channels == 1:
        # rgb_to_grayscale keeps uint8 (it rounds internally)
        x = tf.image.rgb_to_grayscale(x)
    elif have not in (1, 3):
        raise RunError(f"images with {have} channels cannot be converted to {channels} channels")
    if tuple(x.shape[-3:-1]) != (height, width):
        # antialias keeps downscaled images faithful; bilinear weights are convex, so the
        # result stays in [0, 255] (the clip only removes float rounding).
        x = tf.image.resize(x, (height, width), method="bilinear", antialias=True)
        x = tf.clip_by_value(x, 0.0, 255.0)
        if as_uint8:
            x = tf.cast(tf.round(x), tf.uint8)
    return x


#: The most pixels one image may decode to: PIL's own decompression-bomb limit (twice its warning
#: size, 179 M pixels: a 13,000 x 13,000 photo). A 389 KB PNG of zeros can say 20,000 x 20,000 and
#: take 2 GB to decode; a folder of them would exhaust memory in parallel decoding.
MAX_IMAGE_PIXELS = 178_956_970


def padded_bytes(contents, pos, n: int, pad: bytes):
    """``n`` bytes of a string tensor from ``pos`` as int32 values, zero past the end: graph ops."""
    import tensorflow as tf

    pos = tf.clip_by_value(pos, 0, tf.strings.length(contents))
    padded = tf.strings.join([tf.strings.substr(contents, pos, n), pad])
    return tf.cast(tf.io.decode_raw(padded, tf.uint8)[:n], tf.int32)


def header_pixels(contents):
    """The pixel count an image's header announces (int64), read without decoding: JPEG (its
    SOF marker), PNG (IHDR), GIF (logical screen), BMP (info header); 0 for anything else (the
    decoder refuses it). Graph ops only."""
    import tensorflow as tf

    def at(pos, n):
        return tf.cast(padded_bytes(contents, pos, n, b"\0" * 8), tf.int64)

    def jpeg():
        hw = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
        return hw[0] * hw[1]

    def png():  # width, height: big-endian uint32 at 16 and 20
        b = at(16, 8)
        width = ((b[0] * 256 + b[1]) * 256 + b[2]) * 256 + b[3]
        height = ((b[4] * 256 + b[5]) * 256 + b[6]) * 256 + b[7]
        return width * height

    def gif():  # little-endian uint16 at 6 and 8
        b = at(6, 4)
        return (b[0] + 256 * b[1]) * (b[2] + 256 * b[3])

    def bmp():  # little-endian int32 at 18 and 22; a negative height means top-down rows
        b = at(18, 8)
        width = b[0] + 256 * (b[1] + 256 * (b[2] + 256 * b[3]))
        height = b[4] + 256 * (b[5] + 256 * (b[6] + 256 * b[7]))
        height = tf.where(height >= 2**31, 2**32 - height, height)
        width = tf.where(width >= 2**31, 2**32 - width, width)
        return width * height

    magic = tf.strings.substr(contents, 0, 4)
    zero = lambda: tf.constant(0, tf.int64)  # noqa: E731
    return tf.case(
        [
            (tf.io.is_jpeg(contents), jpeg),
            (tf.equal(magic, b"\x89PNG"), png),
            (tf.equal(tf.strings.substr(magic, 0, 3), b"GIF"), gif),
            (tf.equal(tf.strings.substr(magic, 0, 2), b"BM"), bmp),
        ],
        default=zero,
        exclusive=False,
    )


def bounded(contents):
    """``contents`` once its header is known to announce at most MAX_IMAGE_PIXELS (else an
    InvalidArgumentError, which the callers turn into a line naming the file)."""
    import tensorflow as tf

    check = tf.debugging.assert_less_equal(
        header_pixels(contents),
        tf.constant(MAX_IMAGE_PIXELS, tf.int64),
        message=f"the image is larger than {MAX_IMAGE_PIXELS:,} pixels",
    )
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def check_image_pixels(path: str | Path, upright: bool = False) -> tuple[int, int] | None:
    """RunError when the image file's header announces more than MAX_IMAGE_PIXELS (read by
    PIL from the header alone; a file PIL cannot identify is left to the decoder). Returns
    (height, width), None for a file PIL cannot identify; ``upright``: as viewers show it (an
    EXIF orientation 5-8 turns it a quarter, as decoding does)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                quarter = upright and img.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8)
    except Image.DecompressionBombError:
        width, height, quarter = MAX_IMAGE_PIXELS + 1, 1, False  # PIL refused the header itself
    except Exception:  # noqa: BLE001 - not identifiable: the decoder says why
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise RunError(
            f"image file {path} is {width} x {height} pixels; an image may have at most "
            f"{MAX_IMAGE_PIXELS / 1e6:.0f} M pixels (a decompression bomb, or a scan too large "
            "to decode whole)",
            hint="remove it, or downscale it before training",
        )
    return (width, height) if quarter else (height, width)


_EXIF_ORIENTATION = 0x0112
_MAX_IFD_ENTRIES = 32
# EXIF (APP1) comes first, or after a small APP0 (JFIF): look in the first 4 KiB only.
_EXIF_WINDOW = 4096
_EXIF = "Exif\x00\x00"
_PAD = b"\0" * (12 * _MAX_IFD_ENTRIES)


def exif_orientation(contents):
    """The EXIF orientation (1..8) of JPEG bytes, 1 when there is none: graph ops only.

    Phones store the photo as the sensor saw it and the rotation in this tag; viewers apply
    it, so training and prediction must too. The APP1 ``Exif`` block is found in the first
    4 KiB and the tag is read from its first IFD: a few small reads per image
    (``benchmarks/exif_orientation.py``). Every read is bounded and padded, so a malformed
    block reads as 1 (no rotation), never as an error.
    """
    import tensorflow as tf

    size = tf.strings.length(contents)

    def raw(pos, n):
        return padded_bytes(contents, pos, n, _PAD)

    def find_app1():  # the TIFF block's offset (after "Exif\0\0"), or -1
        parts = tf.strings.split(tf.strings.substr(contents, 0, _EXIF_WINDOW), _EXIF, 1)
        return tf.where(tf.size(parts) > 1, tf.strings.length(parts[0]) + len(_EXIF), -1)

    def parse(tiff):
        header = raw(tiff, 8)
        little = tf.equal(header[0], 0x49)  # "II": little-endian, "MM": big-endian

        def u16(first, second):
            return tf.where(little, first + 256 * second, 256 * first + second)

        low = u16(header[4], header[5])
        high = u16(header[6], header[7])
        offset = tf.where(little, low + 65536 * high, 65536 * low + high)
        ifd = tiff + tf.clip_by_value(offset, 0, size)
        count = raw(ifd, 2)
        n = tf.clip_by_value(u16(count[0], count[1]), 0, _MAX_IFD_ENTRIES)
        entries = tf.reshape(raw(ifd + 2, 12 * n), [-1, 12])
        tags = u16(entries[:, 0], entries[:, 1])
        values = u16(entries[:, 8], entries[:, 9])
        found = tf.concat([tf.boolean_mask(values, tf.equal(tags, _EXIF_ORIENTATION)), [1]], 0)
        return tf.where((found[0] >= 1) & (found[0] <= 8), found[0], 1)

    def jpeg():
        tiff = find_app1()
        return tf.cond(tiff >= 0, lambda: parse(tiff), lambda: tf.constant(1))

    return tf.cond(tf.io.is_jpeg(contents), jpeg, lambda: tf.constant(1))


def orient(image, orientation):
    """``image`` turned as EXIF ``orientation`` (1..8) says a viewer shows it."""
    import tensorflow as tf

    flip = tf.image.flip_left_right
    rot = tf.image.rot90  # counter-clockwise
    swap = lambda x: tf.transpose(x, [1, 0, 2])  # noqa: E731
    branches = [
        lambda: image,  # 1: as stored
        lambda: flip(image),  # 2: mirrored
        lambda: rot(image, 2),  # 3: upside down
        lambda: tf.image.flip_up_down(image),  # 4
        lambda: swap(image),  # 5: transposed
        lambda: rot(image, 3),  # 6: turned 90 degrees clockwise (portrait phone photos)
        lambda: rot(swap(image), 2),  # 7: transverse
        lambda: rot(image, 1),  # 8: turned 90 degrees counter-clockwise
    ]
    out = tf.switch_case(orientation - 1, branches)
    out.set_shape([None, None, image.shape[-1]])
    return out


def decode(contents, input_shape: Sequence[int]):
    """Decode PNG/JPEG/BMP/GIF bytes (a string tensor) into a converted uint8 image (a JPEG
    turned upright by its EXIF orientation, as viewers show it)."""
    import tensorflow as tf

    # Always decode to RGB (every format supports it) so the channel count is static.
    image = tf.io.decode_image(bounded(contents), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    image = orient(image, exif_orientation(contents))
    # (A zero-size image is refused by the decoders themselves, with a reason.)
    return convert(image, input_shape)


def decode_random_crop(contents, input_shape: Sequence[int], seed, scale, ratio):
    """Decode a random resized crop (Inception-style) of image bytes, as a converted uint8 image.

    JPEGs are decoded with the fused ``decode_and_crop_jpeg``: only the crop window is
    decoded. Other formats are decoded whole, then cropped. ``seed``: a shape-[2] int tensor
    (stateless, so a seeded run repeats exactly). ``scale``: (min, max) area fraction;
    ``ratio``: (min, max) aspect ratio.
    """
    import tensorflow as tf

    whole = tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4])

    def window(size):
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            size,
            whole,
            seed=seed,
            min_object_covered=0.0,
            aspect_ratio_range=ratio,
            area_range=scale,
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return begin, extent

    def jpeg():
        begin, extent = window(tf.image.extract_jpeg_shape(contents))
        crop = tf.stack([begin[0], begin[1], extent[0], extent[1]])
        return tf.image.decode_and_crop_jpeg(contents, crop, channels=3)

    def other():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        begin, extent = window(tf.shape(image))
        return tf.slice(image, begin, extent)

    contents = bounded(contents)
    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image.set_shape([None, None, 3])
    # Cropped as stored, then turned upright: a random window of the upright photo (the ratio
    # range is inverted by a quarter turn; the default one is symmetric).
    image = orient(image, exif_orientation(contents))
    return convert(image, input_shape)


def decode_file(path: str | Path, input_shape: Sequence[int], checked: bool = False) -> np.ndarray:
    """One image file as a converted uint8 array; RunError naming the file if it is bad.
    ``checked``: the caller has read its header with check_image_pixels already."""
    import tensorflow as tf

    from .scan import check_image_file

    path = Path(path)
    if not os.path.lexists(path):
        raise RunError(f"image file not found: {path}")
    check_image_file(str(path))  # regular, readable, bounded: before opening it
    if not checked:
        check_image_pixels(path)  # its header: a few bytes, before decoding megapixels
    try:
        with open(path, "rb") as fh:
            contents = fh.read()
    except OSError as exc:
        raise RunError(f"cannot read image file {path}: {exc.strerror or exc}") from None
    try:
        return decode(tf.constant(contents), input_shape).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError, ValueError) as exc:
        # TensorFlow's op decorations ({{node ...}}, [Op:DecodeImage] name:) say nothing useful
        text = re.sub(r"\{\{.*?\}\}|\s*\[Op:[^\]]*\].*", "", str(exc)).strip()
        reason = text.splitlines()[0].rstrip(". ")[:120] if text else type(exc).__name__
        raise RunError(
            f"corrupt or unsupported image file {path} ({reason})",
            hint="remove or replace it; supported: " + ", ".join(IMAGE_EXTENSIONS),
        ) from None


def load_images(
    paths: Sequence[str | Path], input_shape: Sequence[int]
) -> tuple[np.ndarray, list[str]]:
    """Decode image files as training does: (float32 (N,H,W,C) in [0, 255], file names)."""
    shape = check_input_shape(input_shape)
    arrays = [decode_file(p, shape) for p in paths]
    names = [str(p) for p in paths]
    if not arrays:
        return np.zeros((0, *shape), np.float32), names
    return np.stack(arrays).astype(np.float32), names


def find_corrupt(paths: Sequence[str], input_shape: Sequence[int]) -> None:
    """Raise RunError for the first file that does not decode (the slow, error-only path)."""
    for path in paths:
        decode_file(path, input_shape)
