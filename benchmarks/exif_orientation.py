"""The cost of what cnnspec.data.images.decode adds to decoding JPEGs: the EXIF orientation
(parse and turn) and the decompression-bomb check (the header's pixel count, read first).

Decodes the same JPEGs (640x480, half of them with an orientation tag) through a tf.data map
four ways in one run: tf.io.decode_image alone (the old path), cnnspec's decode (bomb check,
EXIF parse and turn), the EXIF parse alone and the header check alone. Prints images/s and the
ratio to the old path.

    python benchmarks/exif_orientation.py [--images 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np


def jpegs(n: int) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8))
        exif = Image.Exif()
        if i % 2:
            exif[0x0112] = 6
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90, exif=exif)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import tensorflow as tf

    from cnnspec.data.images import convert, decode, exif_orientation, header_pixels

    shape = (224, 224, 3)
    data = tf.constant(jpegs(args.images))

    def plain(c):
        image = tf.io.decode_image(c, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return convert(image, shape)

    ways = {
        "decode_image (no EXIF)": plain,
        "cnnspec decode (EXIF)": lambda c: decode(c, shape),
        "EXIF parse alone": exif_orientation,
        "bomb check alone": header_pixels,
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(args.rounds):  # interleaved: a loaded machine hits every way alike
        for name, fn in ways.items():
            ds = tf.data.Dataset.from_tensor_slices(data).map(fn, num_parallel_calls=1)
            start = time.perf_counter()
            for _ in ds:
                pass
            best[name] = min(best[name], time.perf_counter() - start)
    base = best["decode_image (no EXIF)"]
    for name, seconds in best.items():
        print(f"{name:26s} {args.images / seconds:8.0f} images/s  {seconds / base:5.2f}x time")


if __name__ == "__main__":
    main()
