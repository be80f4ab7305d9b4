"""Segmentation data (issue 16): masks from folders, manifests, .npz and the shipped canvases;
nearest-neighbour resizing, 255 = ignore, masks moved with their images by augmentation; the
task's numpy scores. Fast: no training here (tests/test_segmentation.py trains)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.data import load_data, make_pipeline
from cnnspec.data.kinds.segmentation import canvases
from cnnspec.errors import RunError


def mask_folder(root, n=8, size=12, palette=True):
    """images/ and masks/ of ``n`` pairs: a bright square (class 2) on a grey left half (class
    1), right half background (0), a 255 (ignore) pixel in a corner; palette or L PNG masks."""
    from PIL import Image

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        mask = np.zeros((size, size), np.uint8)
        img[:, : size // 2] = 90
        mask[:, : size // 2] = 1
        top, left = (int(v) for v in rng.integers(0, size - 4, 2))
        img[top : top + 4, left : left + 4] = 250
        mask[top : top + 4, left : left + 4] = 2
        mask[0, -1] = 255
        Image.fromarray(img).save(root / "images" / f"s{i}.png")
        m = Image.fromarray(mask, mode="L")
        if palette:
            m = m.convert("P")  # palette indices = the grey values (class indices)
        m.save(root / "masks" / f"s{i}.png")
    return root


def mask_manifest(tmp):
    mask_folder(tmp / "pairs")
    rows = "".join(f"pairs/images/s{i}.png,pairs/masks/s{i}.png\n" for i in range(8))
    (tmp / "seg.csv").write_text("image,mask\n" + rows)
    return str(tmp / "seg.csv")


def _first(data, split="train"):
    x, m = next(iter(data.split(split).batch(64)))
    return np.asarray(x), np.asarray(m)


def test_a_mask_folder_reads_palette_indices_resized_nearest(tmp_path):
    root = mask_folder(tmp_path / "d", size=12)
    data = load_data(str(root), (24, 24, 3), cache="memory", validation_split=0.25, test_split=0)
    assert data.masks and data.class_names == ["0", "1", "2"]
    x, m = _first(data)
    assert x.shape[1:] == (24, 24, 3) and m.shape[1:] == (24, 24) and m.dtype == np.uint8
    # nearest neighbour: only the values that were there (never a blend such as 128)
    assert set(np.unique(m)) <= {0, 1, 2, 255}
    assert (m[:, :, :12] >= 1).all() or (m[:, :, :12] == 255).any()
    assert (m[:, 0, -2:] == 255).all()  # the ignore pixel, doubled by the 2x resize


def test_a_colour_mask_is_refused_naming_the_file(tmp_path):
    from PIL import Image

    root = mask_folder(tmp_path / "d", palette=False)
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).save(root / "masks" / "s3.png")
    with pytest.raises(RunError, match=r"s3\.png: a mask must be a single-channel or palette"):
        load_data(str(root), (12, 12, 3), cache="none")


def test_an_image_without_its_mask_is_refused(tmp_path):
    root = mask_folder(tmp_path / "d")
    (root / "masks" / "s5.png").unlink()
    with pytest.raises(RunError, match="1 image\\(s\\) have no mask of the same name"):
        load_data(str(root), (12, 12, 3), cache="none")


def test_a_manifest_image_mask_reads_the_same_pairs(tmp_path):
    data = load_data(mask_manifest(tmp_path), (12, 12, 3), cache="none", test_split=0,
                     validation_split=0.25)  # fmt: skip
    assert data.masks and data.sizes["train"] == 6 and data.class_names == ["0", "1", "2"]


def test_an_npz_with_masks_and_values_that_are_not_class_indices(tmp_path):
    x, m = canvases(40, seed=3)
    np.savez(tmp_path / "s.npz", x=x, y=m)
    data = load_data(str(tmp_path / "s.npz"), (16, 16, 1), cache="memory", test_split=0)
    assert data.masks and len(data.class_names) == int(m[m != 255].max()) + 1
    _, got = _first(data)
    assert got.shape[1:] == (16, 16) and set(np.unique(got)) <= set(np.unique(m))
    bad = m.astype(np.int64)
    bad[2, 3, 4] = 300
    np.savez(tmp_path / "bad.npz", x=x, y=bad)
    with pytest.raises(RunError, match=r"mask value 300 at \(2, 3, 4\) is not a class index"):
        load_data(str(tmp_path / "bad.npz"), (16, 16, 1), cache="none")


def test_the_shipped_canvases_are_deterministic_with_ignore_rims():
    x1, m1 = canvases(30)
    x2, m2 = canvases(30)
    assert np.array_equal(x1, x2) and np.array_equal(m1, m2)
    assert set(np.unique(m1)) <= {*range(11), 255} and (m1 == 255).any()
    # every ink pixel is a digit's class, the background is empty
    assert (x1[..., 0][m1 == 0] == 0).all() and (x1[..., 0][(m1 > 0) & (m1 < 255)] > 0).all()


def test_geometric_augmentation_moves_the_mask_with_the_image_photometric_does_not():
    """Each mask pixel still labels the same image content after flips/rotation/translation:
    an image whose value encodes the class (class c -> 40*c+20) keeps value == 40*mask+20."""
    from cnnspec.spec.train import AugmentSpec

    rng = np.random.default_rng(1)
    masks = np.zeros((8, 16, 16), np.uint8)
    for i in range(8):
        r, c = (int(v) for v in rng.integers(0, 10, 2))
        masks[i, r : r + 6, c : c + 4] = 1 + i % 3
    images = (masks[..., None].astype(np.float32) * 40 + 20).astype(np.uint8)
    import tensorflow as tf

    geometric = ("flip_horizontal", {"rotate": 0.25}, {"translate": 0.2})
    ds = tf.data.Dataset.from_tensor_slices((images, masks))

    def batch(kinds):
        augment = [AugmentSpec.model_validate(a) for a in kinds]
        x, m = next(iter(make_pipeline(ds, 8, training=True, augment=augment, seed=3)))
        return np.asarray(x), np.asarray(m)

    x_plain, m_plain = batch(())
    x_bright, m_bright = batch(({"brightness": 0.3},))
    assert np.array_equal(m_bright, m_plain) and not np.allclose(x_bright, x_plain)  # image only
    x, m = batch(geometric)
    assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1, 2, 3}
    assert not np.array_equal(m, masks)  # something moved
    # inside a region of the mask (its 3x3 neighbourhood one class) the bilinear image is not
    # a blend, and there it must show that class's value
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)), constant_values=254)  # border: not inside
    inside = np.ones_like(m, bool)
    for dr in range(3):
        for dc in range(3):
            inside &= padded[:, dr : dr + 16, dc : dc + 16] == m
    assert inside.mean() > 0.4
    assert np.array_equal(np.rint(x[..., 0])[inside], (m.astype(np.float32) * 40 + 20)[inside])


def test_a_mixing_augmentation_is_refused_for_masks():
    import tensorflow as tf

    from cnnspec.spec.train import AugmentSpec

    ds = tf.data.Dataset.from_tensor_slices(
        (np.zeros((4, 8, 8, 1), np.uint8), np.zeros((4, 8, 8), np.uint8))
    )
    with pytest.raises(RunError, match="augment randaugment cannot move a segmentation mask"):
        make_pipeline(ds, 4, training=True, augment=[AugmentSpec.model_validate("randaugment")])


def test_scores_honour_the_ignore_label():
    from cnnspec.tasks.base import OutputPlan
    from cnnspec.tasks.segmentation import TASK

    truth = np.array([[[0, 1], [1, 255]]], np.uint8)
    pred = np.zeros((1, 2, 2, 2), np.float32)
    pred[0, 0, 0, 0] = pred[0, 0, 1, 1] = pred[0, 1, 0, 0] = 1  # pixel (1,0) wrong
    pred[0, 1, 1, 1] = 1  # predicted 1 on the ignored pixel: must not count
    plan = OutputPlan("seg", TASK, None, 1.0, ["mean_iou", "dice"], ["bg", "fg"])
    got = TASK.scores(pred, truth, plan)
    # bg: tp 1, fp 1 -> IoU 1/2; fg: tp 1, fn 1 -> IoU 1/2; dice 2/3 each
    assert got == pytest.approx({"mean_iou": 0.5, "dice": 2 / 3})
    report = TASK.report(pred, truth, plan)
    assert report["confusion_matrix"] == [[1, 0], [1, 1]]


def test_masks_are_cached_on_disk_with_their_images_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSPEC_CACHE", str(tmp_path / "cache"))
    root = mask_folder(tmp_path / "d")
    lines: list[str] = []
    first = load_data(str(root), (12, 12, 3), cache="disk", test_split=0, echo=lines.append)
    again = load_data(str(root), (12, 12, 3), cache="disk", test_split=0, echo=lines.append)
    assert any("reusing the disk cache" in line for line in lines), lines
    (x1, m1), (x2, m2) = _first(first), _first(again)
    assert np.array_equal(x1, x2) and np.array_equal(m1, m2) and m1.dtype == np.uint8


def test_a_binary_sigmoid_head_is_scored_and_trained_as_two_classes():
    import keras

    from cnnspec.tasks.base import OutputPlan
    from cnnspec.tasks.segmentation import TASK, keras_parts

    truth = np.array([[[0, 1], [1, 255]]], np.uint8)
    prob = np.array([[[[0.1], [0.9]], [[0.8], [0.99]]]], np.float32)  # > 0.5: foreground
    plan = OutputPlan("seg", TASK, None, 1.0, ["mean_iou", "dice"], ["0", "1"])
    assert TASK.scores(prob, truth, plan) == pytest.approx({"mean_iou": 1.0, "dice": 1.0})
    loss, iou = keras_parts()
    good = float(keras.ops.convert_to_numpy(loss("dice_ce")(truth, prob)))
    bad = float(keras.ops.convert_to_numpy(loss("dice_ce")(truth, 1 - prob)))
    assert good < bad
    metric = iou(2, score="mean_iou")
    metric.update_state(truth, prob)
    assert float(metric.result()) == pytest.approx(1.0)


@pytest.mark.parametrize(("orientation", "upright"), [(1, (20, 40)), (6, (40, 20)), (8, (40, 20))])
def test_a_phone_photo_is_predicted_at_its_upright_size(tmp_path, orientation, upright):
    """A JPEG stored 40 wide x 20 high with EXIF orientation 6 or 8 is shown 20 wide x 40 high:
    the image predicted (and the mask written) must have that size, not the stored one."""
    from PIL import Image

    from cnnspec.data.images import decode_file
    from cnnspec.tasks.segmentation_io import image_size

    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # the left half white: turned upright, the white half is on top/bottom
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    assert image_size(path) == upright
    decoded = decode_file(path, [*upright, 3])
    assert decoded.shape == (*upright, 3)
