"""Augmentation: every AugmentSpec kind on real image batches, the one-resampling geometric
transform against the composition of its parts (and Keras' own affine_transform), the spec's
located errors, and `cnnspec train` with the ImageNet-style kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cli import main
from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec
from cnnspec.spec.train import AugmentSpec, TrainSpec

ROOT = Path(__file__).resolve().parent.parent
LENET = str(ROOT / "specs" / "lenet5.yaml")

#: one nonzero-strength example of every kind (the test below checks it covers the registry)
EXAMPLES = {
    "flip_horizontal": "flip_horizontal",
    "flip_vertical": "flip_vertical",
    "rotate": {"rotate": 0.2},
    "translate": {"translate": 0.2},
    "zoom": {"zoom": 0.3},
    "shear": {"shear": 0.3},
    "contrast": {"contrast": 0.5},
    "brightness": {"brightness": 0.3},
    "random_resized_crop": {"random_resized_crop": {"scale": [0.2, 0.6]}},
    "mixup": {"mixup": {"alpha": 1.0}},
    "cutmix": "cutmix",
    "randaugment": {"randaugment": {"num_ops": 2, "factor": 0.8}},
}


def augments(*items) -> list[AugmentSpec]:
    return TrainSpec.model_validate({"augment": list(items)}).augment


def digit_batches(dtype: str, n: int = 32):
    """Real images (scikit-learn digits, upscaled to 24x24) as one batched dataset, int labels."""
    import tensorflow as tf
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.kron(digits.images[:n], np.ones((3, 3)))[..., None] * (255 / 16)
    x = x.astype(np.uint8).astype(dtype)
    return tf.data.Dataset.from_tensor_slices((x, digits.target[:n])).batch(n), x


def run_augment(kind_item, dtype="uint8", seed=3):
    import tensorflow as tf

    from cnnspec.data.augment import augment_batches

    ds, raw = digit_batches(dtype)
    out = augment_batches(ds, augments(kind_item), seed, lambda y: tf.one_hot(y, 10))
    x, y = next(iter(out))
    return x.numpy(), y.numpy(), raw


def test_examples_cover_the_registries_and_the_spec():
    from cnnspec.data.augment import KINDS

    assert set(KINDS) == set(AugmentSpec.model_fields) == set(EXAMPLES)
    assert len(KINDS) == len(set(KINDS))  # each kind in exactly one registry


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_every_kind_shape_dtype_seeded_and_changes_the_image(kind):
    dtype = "float32" if kind in ("rotate", "brightness", "mixup", "randaugment") else "uint8"
    x, y, raw = run_augment(EXAMPLES[kind], dtype)
    assert x.shape == raw.shape and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 255 + 1e-3
    assert np.abs(x - raw).mean() > 1.0, "a nonzero strength must change the images"
    again, y_again, _ = run_augment(EXAMPLES[kind], dtype)
    assert np.array_equal(x, again) and np.array_equal(y, y_again)  # seeded: bit-identical
    other, _, _ = run_augment(EXAMPLES[kind], dtype, seed=4)
    assert not np.array_equal(x, other)
    assert y.shape == (len(raw), 10) and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    soft = ~np.isclose(y.max(axis=1), 1.0)
    if kind in ("mixup", "cutmix"):  # labels follow the pixels mixed in
        assert soft.any()
    else:
        assert not soft.any()


def test_new_draws_every_batch_and_every_epoch():
    import tensorflow as tf

    from cnnspec.data.augment import augment_batches

    ds, _ = digit_batches("uint8", 8)
    out = augment_batches(ds.repeat(2), augments({"rotate": 0.3}), 1)
    first, second = (x.numpy() for x, _ in out)  # the same 8 images, twice
    assert not np.array_equal(first, second)
    again = [x.numpy() for x, _ in augment_batches(ds.repeat(2), augments({"rotate": 0.3}), 1)]
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)
    assert tf.reduce_all(tf.math.is_finite(first))


# --- the combined transform -------------------------------------------------------------------


def smooth_image(h=33, w=41):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack(
        [
            127 + 100 * np.sin(xx / 5) * np.cos(yy / 7),
            127 + 100 * np.cos((xx + yy) / 9),
            2 * xx + yy,
        ],
        -1,
    )[None]


def fixed_ops(h, w):
    import tensorflow as tf

    from cnnspec.data import augment as A

    def one(v):
        return tf.constant([v], tf.float32)

    return [
        A.cropping(one(3.0), one(4.0), one(25.0), one(30.0), h, w),
        A.flipping(tf.constant([True]), h, w, horizontal=True),
        A.rotation(one(0.3), h, w),
        A.translation(one(2.0), one(-3.0)),
        A.scaling(one(1.1), h, w),
        A.shearing(one(0.1), one(-0.05), h, w),
        A.flipping(tf.constant([True]), h, w, horizontal=False),
    ]


def test_one_resampling_matches_the_composition_of_the_individual_transforms():
    import tensorflow as tf

    from cnnspec.data.augment import resample

    image = tf.constant(smooth_image())
    ops = fixed_ops(33, 41)
    step_by_step = image
    for m in ops:  # the first op acts first on the image, as in a recipe
        step_by_step = resample(step_by_step, m)
    combined = tf.eye(3, batch_shape=[1])
    for m in ops:
        combined = combined @ m
    once = resample(image, combined).numpy()[0]
    diff = np.abs(once - step_by_step.numpy()[0])
    # away from the borders (reflection differs there) only interpolation differs: each of
    # the 7 steps blurs a little, the single resampling once
    assert diff[8:-8, 8:-8].max() < 4.0 and diff[8:-8, 8:-8].mean() < 0.6, diff.max()
    # ... and the result is a real transform, far from the input
    assert np.abs(once - image.numpy()[0]).mean() > 20


def test_resampling_agrees_with_keras_affine_transform_and_exact_cases():
    import keras
    import tensorflow as tf

    from cnnspec.data import augment as A

    image = tf.constant(smooth_image())
    for m in fixed_ops(33, 41):
        theirs = keras.ops.image.affine_transform(
            image, tf.reshape(m, [-1, 9])[:, :8], interpolation="bilinear", fill_mode="reflect"
        )
        mine = A.resample(image, m)
        assert np.abs(np.asarray(theirs) - mine.numpy()).max() < 1e-3
    flipped = A.resample(image, A.flipping(tf.constant([True]), 33, 41, horizontal=True))
    assert np.array_equal(flipped.numpy()[0], image.numpy()[0, :, ::-1])
    square = image[:, :, :33]
    quarter = A.resample(square, A.rotation(tf.constant([np.pi / 2]), 33, 33))
    assert np.abs(quarter.numpy()[0] - np.rot90(square.numpy()[0])).max() < 1e-3
    whole = A.resample(
        image, A.cropping(*(tf.constant([v]) for v in (0.0, 0.0, 33.0, 41.0)), 33, 41)
    )
    assert np.abs(whole.numpy() - image.numpy()).max() < 1e-3


def test_random_resized_crop_zooms_in_by_its_scale():
    import tensorflow as tf

    from cnnspec.data.augment import transform_images

    # 1-pixel vertical lines: the larger the zoom, the fewer lines remain in view
    grid = np.zeros((1, 48, 48, 1), np.float32)
    grid[:, :, ::4] = 255
    batch = tf.constant(np.repeat(grid, 16, 0))
    lines = {}
    for scale in ([0.9, 1.0], [0.1, 0.15]):
        x = transform_images(batch, augments({"random_resized_crop": {"scale": scale}}), [1, 2])
        row = x.numpy()[:, 24, :, 0] > 127  # pixels on a line, along one row
        lines[scale[0]] = np.mean([np.sum(r[1:] & ~r[:-1]) for r in row])
    assert lines[0.9] > 9 and lines[0.1] < 5, lines  # 12 lines full size, ~4 at 1/8 the area


def test_in_model_layer_is_identity_at_inference_and_augments_in_training():
    import tensorflow as tf

    from cnnspec.data.augment import augment_layer

    layer = augment_layer(augments("flip_horizontal", {"rotate": 0.2}, {"zoom": 0.2}), seed=5)
    _, raw = digit_batches("float32", 16)
    x = tf.constant(raw)
    assert np.array_equal(layer(x, training=False).numpy(), raw)
    a, b = layer(x, training=True).numpy(), layer(x, training=True).numpy()
    assert a.shape == raw.shape and np.abs(a - raw).mean() > 1 and not np.array_equal(a, b)


def test_mixing_gives_every_output_the_same_soft_label():
    import tensorflow as tf

    from cnnspec.data.augment import augment_batches

    ds, _ = digit_batches("uint8")

    def labels(y):
        t = tf.one_hot(y, 10)
        return {"main": t, "aux": t}

    x, y = next(iter(augment_batches(ds, augments({"mixup": {"alpha": 1.0}}), 0, labels)))
    assert np.array_equal(y["main"].numpy(), y["aux"].numpy())
    assert not np.allclose(y["main"].numpy().max(axis=1), 1.0)
    with pytest.raises(ValueError, match="mixup mixes one-hot labels"):
        next(iter(augment_batches(ds, augments("mixup"), 0)))  # integer labels


# --- the spec ----------------------------------------------------------------------------------

SPEC = """\
name: t
input: [32, 32, 1]
layers:
  - flatten
  - dense: 10, softmax
train:
  loss: {loss}
  augment:
    - flip_horizontal
    - {item}
"""


@pytest.mark.parametrize(
    ("item", "loss", "where", "words"),
    [
        ("{random_resized_crop: {scale: [0.5, 2]}}", "categorical_crossentropy", ":10:",
         "random_resized_crop.scale: must be [min, max] with 0 < min <= max <= 1; received [0.5, 2.0]"),
        ("{random_resized_crop: {ratio: [1.5]}}", "categorical_crossentropy", ":10:",
         "random_resized_crop.ratio: must be [min, max]"),
        ("{mixup: {alpha: 0}}", "categorical_crossentropy", ":10:", "mixup.alpha"),
        ("{randaugment: {num_ops: 11}}", "categorical_crossentropy", ":10:", "num_ops"),
        ("{shear: 1.5}", "categorical_crossentropy", ":10:", "shear"),
        ("cutmix", "sparse_categorical_crossentropy", ":7:",
         "train.loss: augment cutmix mixes labels into soft labels"),
        ("mixupp", "categorical_crossentropy", ":10:", "mixup"),
    ],
)  # fmt: skip
def test_bad_augment_parameters_are_located(item, loss, where, words):
    with pytest.raises(SpecError) as err:
        loads_spec(SPEC.format(item=item, loss=loss), "net.yaml")
    text = str(err.value)
    assert text.startswith("net.yaml" + where) and words in text, text
    assert "\n" not in text.strip()


def test_good_augment_parameters_validate():
    spec = loads_spec(
        SPEC.format(item="{random_resized_crop: {scale: [0.3, 1], ratio: [0.5, 2]}}", loss="categorical_crossentropy"),
        "net.yaml",
    )  # fmt: skip
    crop = spec.train.augment[1].params
    assert crop.scale == [0.3, 1.0] and crop.ratio == [0.5, 2.0]


# --- on the path users take --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "augment",
    [
        "[{random_resized_crop: {scale: [0.6, 1]}}, {mixup: {alpha: 0.2}}]",
        "[{randaugment: {num_ops: 1, factor: 0.3}}, cutmix]",
    ],
)
def test_cnnspec_train_with_imagenet_style_augmentation_learns(tmp_path, augment):
    run = tmp_path / "run"
    args = ["train", LENET, "--out", str(run), "--epochs", "4", "--quiet"]
    args += ["--set", f"train.augment={augment}", "--set", "train.optimizer={adam: {lr: 3.0e-3}}"]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_done"] == 4
    assert metrics["test"]["accuracy"] >= 0.6, metrics["test"]  # chance is 0.1
