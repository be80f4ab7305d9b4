"""Random augmentation of training batches (imports TensorFlow; the spec side is AugmentSpec).

Each kind is in exactly one registry, which says how it is applied:

- ``GEOMETRIC``: flips, rotate, translate, zoom, shear and random_resized_crop each give a 3×3
  matrix per image (output pixel -> input pixel). The matrices are multiplied and every image
  is resampled once (bilinear, reflected borders), however many geometric kinds the recipe
  lists: one resampling instead of one per Keras layer, compiled by XLA with the rest.
- ``PHOTOMETRIC``: contrast and brightness, per image, on the float32 [0, 255] values.
- ``KERAS_LAYERS``: Keras' own layers (RandAugment) on the image batch.
- ``MIXING``: Keras' MixUp / CutMix on images *and* one-hot labels (run after the labels are
  made one-hot).

Random draws of the first two are stateless, from a per-batch seed drawn by a seeded
``tf.data.Dataset.random``: a seeded run repeats exactly and, since the seeds are part of the
input stream, skipping batches on resume skips their seeds too. Keras layers keep their own
seeded generator and run sequentially (their state advances in batch order).

Images may arrive as uint8 (the cache) or float; augmented batches are float32 in [0, 255].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

# --- matrices (batched [n, 3, 3], output pixel (x, y, 1) -> input pixel) ------------------------


def _affine(rows: Sequence[Sequence[Any]]) -> tf.Tensor:
    """Stack per-image entries ``[[a, b, c], [d, e, f]]`` (each [n]) into [n, 3, 3] matrices."""
    (a, b, c), (d, e, f) = rows
    zero, one = tf.zeros_like(a), tf.ones_like(a)
    return tf.stack(
        [tf.stack([a, b, c], -1), tf.stack([d, e, f], -1), tf.stack([zero, zero, one], -1)], 1
    )


def centered(m00, m01, m10, m11, height: int, width: int) -> tf.Tensor:
    """The linear map ``[[m00, m01], [m10, m11]]`` about the image centre (pixel coordinates)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    return _affine([[m00, m01, cx - m00 * cx - m01 * cy], [m10, m11, cy - m10 * cx - m11 * cy]])


def rotation(angle, height: int, width: int) -> tf.Tensor:
    """Rotate by ``angle`` radians (per image) about the centre."""
    cos, sin = tf.cos(angle), tf.sin(angle)
    return centered(cos, -sin, sin, cos, height, width)


def translation(dx, dy) -> tf.Tensor:
    """Shift the content by (dx, dy) pixels."""
    one, zero = tf.ones_like(dx), tf.zeros_like(dx)
    return _affine([[one, zero, -dx], [zero, one, -dy]])


def scaling(factor, height: int, width: int) -> tf.Tensor:
    """Zoom about the centre: ``factor`` > 1 shows more of the image (zoom out)."""
    return centered(factor, tf.zeros_like(factor), tf.zeros_like(factor), factor, height, width)


def shearing(sx, sy, height: int, width: int) -> tf.Tensor:
    """Shear about the centre: x_in = x + sx·y, y_in = y + sy·x (centred coordinates)."""
    one = tf.ones_like(sx)
    return centered(one, sx, sy, one, height, width)


def flipping(flip, height: int, width: int, horizontal: bool) -> tf.Tensor:
    """Mirror the images where ``flip`` (bool, per image) is true."""
    one, zero = tf.ones_like(flip, tf.float32), tf.zeros_like(flip, tf.float32)
    sign = tf.where(flip, -one, one)
    if horizontal:
        return _affine([[sign, zero, tf.where(flip, one * (width - 1), zero)], [zero, one, zero]])
    return _affine([[one, zero, zero], [zero, sign, tf.where(flip, one * (height - 1), zero)]])


def cropping(top, left, crop_h, crop_w, height: int, width: int) -> tf.Tensor:
    """Resize the window (top, left, crop_h, crop_w) (pixels, per image) to the whole image."""
    sx, sy = crop_w / width, crop_h / height
    zero = tf.zeros_like(sx)
    return _affine([[sx, zero, left + 0.5 * sx - 0.5], [zero, sy, top + 0.5 * sy - 0.5]])


def _reflect(index, size):
    """Indices outside [0, size) mirrored back in (d c b a | a b c d | d c b a, Keras' reflect)."""
    period = 2 * size
    index = tf.math.floormod(index, period)
    return tf.where(index >= size, period - 1 - index, index)


def resample(images, matrices) -> tf.Tensor:
    """Apply [n, 3, 3] output->input matrices to float32 images [n, h, w, c] in one pass
    (bilinear, reflected borders).

    Written with gathers rather than ``ImageProjectiveTransformV3`` so that XLA can compile it
    (with the matrices' arithmetic) into one fused loop: about 7x faster on CPU than that op.
    """
    shape = tf.shape(images)
    n, h, w, c = shape[0], shape[1], shape[2], shape[3]
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    ones = tf.ones([h * w], tf.int32)
    grid = tf.cast(tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), ones]), tf.float32)
    coords = tf.linalg.matmul(tf.cast(matrices, tf.float32), grid)  # [n, 3, h*w]
    x, y = coords[:, 0] / coords[:, 2], coords[:, 1] / coords[:, 2]
    x0, y0 = tf.floor(x), tf.floor(y)
    wx, wy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    flat = tf.reshape(images, [-1, c])
    first = (tf.range(n) * h * w)[:, None]

    def at(row, col):
        return tf.gather(flat, first + _reflect(row, h) * w + _reflect(col, w))

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return tf.reshape(top * (1 - wy) + bottom * wy, shape)


def resample_nearest(masks, matrices) -> tf.Tensor:
    """Class masks [n, h, w] through the same [n, 3, 3] output->input matrices as
    :func:`resample`, by nearest neighbour (a class index is never blended), reflected borders."""
    shape = tf.shape(masks)
    n, h, w = shape[0], shape[1], shape[2]
    ys, xs = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    ones = tf.ones([h * w], tf.int32)
    grid = tf.cast(tf.stack([tf.reshape(xs, [-1]), tf.reshape(ys, [-1]), ones]), tf.float32)
    coords = tf.linalg.matmul(tf.cast(matrices, tf.float32), grid)  # [n, 3, h*w]
    x = tf.cast(tf.round(coords[:, 0] / coords[:, 2]), tf.int32)
    y = tf.cast(tf.round(coords[:, 1] / coords[:, 2]), tf.int32)
    flat = tf.reshape(tf.cast(masks, tf.int32), [-1])
    first = (tf.range(n) * h * w)[:, None]
    picked = tf.gather(flat, first + _reflect(y, h) * w + _reflect(x, w))
    return tf.cast(tf.reshape(picked, shape), masks.dtype)


# --- the registries -------------------------------------------------------------------------------


def _between(u, low, high):
    return low + u * (high - low)


def _flip(horizontal: bool):
    def sample(_, u, h, w):
        return flipping(u[:, 0] < 0.5, h, w, horizontal)

    return sample


def _rotate(f, u, h, w):
    return rotation(_between(u[:, 0], -2 * math.pi * f, 2 * math.pi * f), h, w)


def _translate(f, u, h, w):
    return translation(_between(u[:, 0], -f * w, f * w), _between(u[:, 1], -f * h, f * h))


def _zoom(f, u, h, w):
    return scaling(_between(u[:, 0], 1.0 - f, 1.0 + f), h, w)


def _shear(f, u, h, w):
    return shearing(_between(u[:, 0], -f, f), _between(u[:, 1], -f, f), h, w)


def _random_resized_crop(p, u, h, w):
    """Inception-style: area ~ U(scale), log aspect ~ U(log ratio), position uniform."""
    area = _between(u[:, 0], p.scale[0], p.scale[1])
    aspect = tf.exp(_between(u[:, 1], math.log(p.ratio[0]), math.log(p.ratio[1])))
    # A window that would not fit is clipped to the image (the aspect bends, never the bounds).
    cw = tf.minimum(tf.sqrt(area * aspect), 1.0)
    ch = tf.minimum(tf.sqrt(area / aspect), 1.0)
    left = u[:, 2] * (1.0 - cw) * w
    top = u[:, 3] * (1.0 - ch) * h
    return cropping(top, left, ch * h, cw * w, h, w)


#: kind -> (uniform draws per image, (params, u [n, draws], height, width) -> [n, 3, 3]
#: output->input matrices)
GEOMETRIC: dict[str, tuple[int, Callable[..., tf.Tensor]]] = {
    "random_resized_crop": (4, _random_resized_crop),
    "flip_horizontal": (1, _flip(True)),
    "flip_vertical": (1, _flip(False)),
    "rotate": (1, _rotate),
    "translate": (2, _translate),
    "zoom": (1, _zoom),
    "shear": (2, _shear),
}


def _brightness(f, images, u):
    delta = _between(u[:, 0], -255.0 * f, 255.0 * f)
    return tf.clip_by_value(images + delta[:, None, None, None], 0.0, 255.0)


def _contrast(f, images, u):
    factor = _between(u[:, 0], 1.0 - f, 1.0 + f)[:, None, None, None]
    mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((images - mean) * factor + mean, 0.0, 255.0)


#: kind -> (uniform draws per image, (params, float32 images, u [n, draws]) -> images)
PHOTOMETRIC: dict[str, tuple[int, Callable[..., tf.Tensor]]] = {
    "brightness": (1, _brightness),
    "contrast": (1, _contrast),
}


def _randaugment(p, seed):
    import keras

    return keras.layers.RandAugment(
        value_range=(0, 255), num_ops=p.num_ops, factor=p.factor, seed=seed, dtype="float32"
    )


#: kind -> (params, seed) -> a Keras layer taking float32 [0, 255] image batches
KERAS_LAYERS: dict[str, Callable[..., Any]] = {"randaugment": _randaugment}


def _mixup(p, seed):
    import keras

    return keras.layers.MixUp(alpha=p.alpha, seed=seed, dtype="float32")


def _cutmix(p, seed):
    import keras

    return keras.layers.CutMix(factor=p.factor, seed=seed, dtype="float32")


#: kind -> (params, seed) -> a Keras layer taking {"images", "labels"} (one-hot labels)
MIXING: dict[str, Callable[..., Any]] = {"mixup": _mixup, "cutmix": _cutmix}

KINDS = (*GEOMETRIC, *PHOTOMETRIC, *KERAS_LAYERS, *MIXING)


# --- applying them -----------------------------------------------------------------------------


def _stage(augment: Sequence[Any], registry: dict) -> list[tuple[int, Any]]:
    """(position in the recipe, AugmentSpec) of the kinds in ``registry``, in recipe order."""
    return [(i, a) for i, a in enumerate(augment) if a.kind in registry]


def _draws(augment: Sequence[Any]) -> list[int]:
    """Uniform draws per image of each geometric, then each photometric kind."""
    return [GEOMETRIC[a.kind][0] for _, a in _stage(augment, GEOMETRIC)] + [
        PHOTOMETRIC[a.kind][0] for _, a in _stage(augment, PHOTOMETRIC)
    ]


def _uniforms(images, augment: Sequence[Any], seed) -> tf.Tensor:
    """Every random number of the batch, [n, draws], from one stateless draw."""
    n = tf.shape(images)[0]
    return tf.random.stateless_uniform([n, max(sum(_draws(augment)), 1)], tf.cast(seed, tf.int64))


def _apply(images, augment: Sequence[Any], u, masks=None):
    """Augmented images; with ``masks`` [n, h, w], (images, masks): the masks go through the
    same geometric transform (nearest), never through the photometric kinds."""
    images = tf.cast(images, tf.float32)
    n = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    if h is None or w is None:
        h, w = tf.cast(tf.shape(images)[1], tf.float32), tf.cast(tf.shape(images)[2], tf.float32)
    draws = _draws(augment)
    columns = iter(tf.split(u[:, : sum(draws)], draws, axis=1) if draws else [])
    geometric = _stage(augment, GEOMETRIC)
    if geometric:
        matrix = tf.eye(3, batch_shape=[n])
        for _, a in geometric:
            matrix = matrix @ GEOMETRIC[a.kind][1](a.params, next(columns), h, w)
        images = resample(images, matrix)
        if masks is not None:
            masks = resample_nearest(masks, matrix)
    for _, a in _stage(augment, PHOTOMETRIC):
        images = PHOTOMETRIC[a.kind][1](a.params, images, next(columns))
    return images if masks is None else (images, masks)


def transform_images(images, augment: Sequence[Any], seed) -> tf.Tensor:
    """The geometric kinds as one resampling, then the photometric ones, on one image batch.

    ``images``: [n, h, w, c] uint8 or float; ``seed``: a shape-[2] integer tensor. The
    geometric matrices compose in recipe order (the first listed acts first on the image).
    """
    return _apply(images, augment, _uniforms(images, augment, seed))


_FUSED: dict[tuple, Any] = {}


def _applier(augment: tuple):
    def apply(images, u):
        return _apply(images, augment, u)

    return apply


def compiled_transform(augment: Sequence[Any]):
    """:func:`transform_images` for ``augment`` as a function (images, seed) whose work
    (matrices, resampling, photometric) XLA compiles into one fused kernel. The random draw
    stays outside: XLA's expansion of it takes seconds to compile, and outside it gives the
    same numbers as :func:`transform_images`. One compiled function per distinct ``augment``
    in a process (compiling takes ~1.5 CPU seconds)."""
    key = tuple((a.kind, repr(a.params)) for a in augment)
    if key not in _FUSED:
        _FUSED[key] = tf.function(_applier(tuple(augment)), jit_compile=True)
    fused = _FUSED[key]

    def transform(images, seed):
        return fused(images, _uniforms(images, augment, seed))

    return transform


def compiled_mask_transform(augment: Sequence[Any]):
    """:func:`compiled_transform` for (images, masks, seed) -> (images, masks): segmentation's
    masks move with their images (one matrix per image, nearest sampling for the mask)."""
    key = ("masks", *((a.kind, repr(a.params)) for a in augment))
    if key not in _FUSED:
        kinds = tuple(augment)
        _FUSED[key] = tf.function(lambda x, m, u: _apply(x, kinds, u, m), jit_compile=True)
    fused = _FUSED[key]

    def transform(images, masks, seed):
        return fused(images, masks, _uniforms(images, augment, seed))

    return transform


def _augment_masks(ds, augment: Sequence[Any], seed: int):
    """Batches of (images, masks [n, h, w]): the geometric and photometric kinds only."""
    from ..errors import RunError

    other = [a.kind for a in augment if a.kind not in GEOMETRIC and a.kind not in PHOTOMETRIC]
    if other:
        raise RunError(
            f"augment {other[0]} cannot move a segmentation mask with its image",
            hint=f"use the geometric and photometric kinds: {', '.join([*GEOMETRIC, *PHOTOMETRIC])}",
        )
    transform = compiled_mask_transform(augment)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda xy, s: transform(xy[0], xy[1], s), num_parallel_calls=tf.data.AUTOTUNE
    )


def augment_batches(ds, augment: Sequence[Any], seed: int = 0, labels=None):
    """Augment a batched (images, int labels) dataset; images come out float32 in [0, 255].

    Order: geometric (one resampling) and photometric kinds, Keras layers (RandAugment), then
    ``labels`` (a graph function: int labels -> what the loss wants), then MixUp / CutMix on
    the images and those labels, which must be one-hot (a dict of outputs: every output gets
    the same mixed label).
    """
    own = _stage(augment, GEOMETRIC) + _stage(augment, PHOTOMETRIC)
    if ds.element_spec[1].shape.rank == 3:  # a mask per image (segmentation): moved with it
        ds = _augment_masks(ds, augment, seed)
        if labels is not None:
            ds = ds.map(lambda x, y: (x, labels(y)), num_parallel_calls=tf.data.AUTOTUNE)
        return ds
    if own:
        transform = compiled_transform(augment)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (transform(xy[0], s), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    # Keras layers draw from their own generator: mapped one batch at a time (no
    # num_parallel_calls), so its state advances in batch order and a seeded run repeats.
    for i, a in _stage(augment, KERAS_LAYERS):
        layer = KERAS_LAYERS[a.kind](a.params, seed + i)
        ds = ds.map(lambda x, y, layer=layer: (layer(x, training=True), y))
    if labels is not None:
        ds = ds.map(lambda x, y: (x, labels(y)), num_parallel_calls=tf.data.AUTOTUNE)
    for i, a in _stage(augment, MIXING):
        layer = MIXING[a.kind](a.params, seed + i)
        ds = ds.map(lambda x, y, layer=layer, kind=a.kind: _mix(layer, kind, x, y))
    return ds


def _mix(layer, kind: str, images, labels):
    target = next(iter(labels.values())) if isinstance(labels, dict) else labels
    if not target.dtype.is_floating or target.shape.rank != 2:
        raise ValueError(f"{kind} mixes one-hot labels; received labels of shape {target.shape}")
    out = layer({"images": images, "labels": target}, training=True)
    mixed = tf.cast(out["labels"], target.dtype)
    if isinstance(labels, dict):
        return out["images"], {name: mixed for name in labels}
    return out["images"], mixed


def augment_layer(augment: Sequence[Any], seed: int = 0):
    """The geometric + photometric kinds as a Keras layer, to run inside a model (on the
    accelerator) instead of in the tf.data pipeline; identity when not training.

    Measured against the pipeline by ``benchmarks/augment_speed.py``.
    """
    import keras

    kinds = _stage(augment, GEOMETRIC) + _stage(augment, PHOTOMETRIC)
    transform = compiled_transform(augment)

    class Augment(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=False):
            if not training or not kinds:
                return images
            return transform(images, self.generator.next())

    return Augment(name="augment")
