"""Image decoding and conversion to a spec's input: the same code for training and prediction."""

from __future__ import annotations

import os
import re
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


def decode(contents, input_shape: Sequence[int]):
    """Decode PNG/JPEG/BMP/GIF bytes (a string tensor) into a converted uint8 image."""
    import tensorflow as tf

    # Always decode to RGB (every format supports it) so the channel count is static.
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
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

    image = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image.set_shape([None, None, 3])
    return convert(image, input_shape)


def decode_file(path: str | Path, input_shape: Sequence[int]) -> np.ndarray:
    """One image file as a converted uint8 array; RunError naming the file if it is bad."""
    import tensorflow as tf

    from .scan import check_image_file

    path = Path(path)
    if not os.path.lexists(path):
        raise RunError(f"image file not found: {path}")
    check_image_file(str(path))  # regular, readable, bounded: before opening it
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
