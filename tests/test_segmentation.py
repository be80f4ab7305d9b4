"""Segmentation (issue 16): head checks located before TensorFlow, run errors for labels that do
not fit, and the shipped small U-Net trained on digits_segmentation (learned: test mean IoU
well above predicting all background), evaluated, predicted (mask PNGs, overlays, tiles) and
exported through the CLI; a user folder (images/ + masks/) trained and resumed bit-identically.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnspec.cli import main
from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec

ROOT = Path(__file__).resolve().parent.parent
UNET = ROOT / "specs" / "unet_small.yaml"

HEAD = """\
name: s
task: segmentation
input: [16, 16, 1]
layers:
  - conv: 3x3, 8, p=same, relu
"""


@pytest.mark.parametrize(
    "last, words",
    [
        ("  - conv: 3x3, 3, softmax", "a segmentation output has the input's spatial size 16x16"),
        ("  - conv: 1x1, 1, relu", "one output channel is a binary mask and needs a sigmoid"),
        ("  - conv: 1x1, 4, sigmoid", "4 output channels are per-pixel class scores and need a"),
        ("  - flatten\n  - dense: 3, softmax", "a segmentation output is a map of the input's"),
    ],
)
def test_a_head_that_does_not_fit_segmentation_is_located(last, words):
    with pytest.raises(SpecError) as exc:
        loads_spec(HEAD + last + "\n", "net.yaml")
    hit = [line for line in str(exc.value).splitlines() if words in line]
    assert hit and hit[0].startswith("net.yaml:"), str(exc.value)


def test_a_binary_sigmoid_head_and_every_loss_validate():
    for loss in ("sparse_categorical_crossentropy", "dice", "focal", "dice_ce"):
        text = (
            HEAD
            + f"  - conv: 1x1, 1, sigmoid\ntrain: {{loss: {loss}, metrics: [mean_iou, dice]}}\n"
        )
        spec = loads_spec(text)
        assert spec.train.loss.kind == loss and spec.task == "segmentation"


def test_val_mean_iou_is_a_monitor_and_a_wrong_monitor_is_located():
    text = HEAD + "  - conv: 1x1, 3, softmax\ntrain:\n  early_stopping: {monitor: val_mean_iou}\n"
    assert loads_spec(text).train.early_stopping.monitor == "val_mean_iou"
    with pytest.raises(SpecError, match="net.yaml:8:.*'val_accuracy' is not a metric"):
        loads_spec(text.replace("val_mean_iou", "val_accuracy"), "net.yaml")


def test_the_losses_skip_ignored_pixels():
    import keras

    from cnnspec.tasks.segmentation import keras_parts

    loss, _ = keras_parts()
    truth = np.array([[[0, 1], [1, 255]]], np.int32)
    good = np.zeros((1, 2, 2, 2), np.float32)
    good[0, 0, 0, 0] = good[0, 0, 1, 1] = good[0, 1, 0, 1] = 1.0
    wrong_on_ignored = good.copy()
    good[0, 1, 1] = [1.0, 0.0]
    wrong_on_ignored[0, 1, 1] = [0.0, 1.0]
    for kind in ("sparse_categorical_crossentropy", "dice", "focal", "dice_ce"):
        a = float(keras.ops.convert_to_numpy(loss(kind)(truth, good)))
        b = float(keras.ops.convert_to_numpy(loss(kind)(truth, wrong_on_ignored)))
        assert a == pytest.approx(b, abs=1e-6), kind
        assert a < 0.05, (kind, a)


def _error(capsys, args) -> str:
    assert main(args) == 1
    return capsys.readouterr().err


def test_labels_that_do_not_fit_are_one_line_run_errors(tmp_path, capsys):
    out = str(tmp_path / "r")
    err = _error(capsys, ["train", str(UNET), "--data", "digits", "--out", out, "-q"])
    assert "has one label per image, but the segmentation output" in err, err
    three = _error(
        capsys, ["train", str(UNET), "--set", "layers.11.conv=1x1, 3, softmax", "--out",
                 str(tmp_path / "r3"), "-q"],
    )  # fmt: skip
    assert "has masks with class index 10" in three and "3 channel(s)" in three, three


# --- trained on the shipped data ------------------------------------------------------------------


def _train(out: Path, *args: str) -> dict:
    assert main(["train", str(UNET), "--out", str(out), "--quiet", *args]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "run"
    return out, _train(out, "--epochs", "6")


def _background_baseline() -> float:
    """Mean IoU of predicting background everywhere on the test split (classes present)."""
    from cnnspec.data import load_data
    from cnnspec.tasks.segmentation import confusion, iou_per_class

    data = load_data("digits_segmentation", (32, 32, 1), cache="none")
    masks = np.concatenate([np.asarray(m) for _, m in data.test.batch(256)])
    cm = confusion(np.zeros_like(masks), masks, 11)
    return float(np.nanmean(iou_per_class(cm)))


@pytest.mark.slow
def test_the_small_unet_learns_the_digit_masks(run):
    _, m = run
    baseline = _background_baseline()
    got = m["test"]["mean_iou"]
    print(f"test mean_iou {got:.4f} vs all-background {baseline:.4f}, dice {m['test']['dice']:.4f}")
    assert got > 3 * baseline and got > 0.3, (got, baseline)
    assert set(m["test"]) >= {"loss", "mean_iou", "dice"}
    report = m["per_class"]["outputs"]["segmentation"]
    assert [r["class"] for r in report["per_class"]][:2] == ["background", "0"]
    assert report["per_class"][0]["iou"] > 0.9  # the background
    assert len(report["confusion_matrix"]) == 11


@pytest.mark.slow
def test_evaluate_reports_per_class_iou_on_the_cli(run, capsys):
    out, m = run
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["task"] == "segmentation" and ev["n"] == 225
    assert ev["mean_iou"] == pytest.approx(m["test"]["mean_iou"], abs=1e-4)
    assert len(ev["confusion_matrix"]) == 11 and ev["per_class"][0]["class"] == "background"
    assert {"iou", "dice", "precision", "recall", "f1"} <= set(ev["per_class"][1])
    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mean IoU" in text and "background" in text


@pytest.mark.slow
def test_explain_points_at_the_digit_it_is_asked_about(run, tmp_path, capsys):
    """cnnspec explain of a segmentation net (was: an internal error): a class's score is its
    share of the predicted mask, and the maps must point at that class's pixels. On 24 test
    canvases, each asked about a digit it holds, the peak lands on that digit (its mask, one
    pixel around) far above chance (the digit's share of the canvas, ~5 %). Measured: gradcam
    1.00, integrated gradients 0.88, occlusion 1.00, saliency 0.17 (saliency and smoothgrad are
    the noisy ones: asked only to beat twice the chance)."""
    from scipy.ndimage import binary_dilation

    from cnnspec.data import load_data
    from cnnspec.explain import Options, get_method, method_names, open_explainable

    out, _ = run
    target = open_explainable(out)
    assert target.task.name == "segmentation" and target.class_names[0] == "background"
    data = load_data("digits_segmentation", (32, 32, 1), cache="none")
    x, masks = (np.asarray(a) for a in next(iter(data.test.batch(24))))
    asked = [int(next(c for c in np.unique(m) if 0 < c < 11)) for m in masks]
    regions = [binary_dilation(m == c, iterations=1) for m, c in zip(masks, asked, strict=True)]
    chance = float(np.mean([r.mean() for r in regions]))
    rates = {}
    for name in method_names():
        method = get_method(name)
        hits = [
            bool(region[tuple(method.explain(target, xi.astype(np.float32), c, Options()).peak)])
            for xi, c, region in zip(x, asked, regions, strict=True)
        ]
        rates[name] = float(np.mean(hits))
    print(f"pointing: {rates}, chance {chance:.3f}")
    capsys.readouterr()
    assert all(r >= 2 * chance for r in rates.values()), (rates, chance)
    assert min(rates["gradcam"], rates["integrated_gradients"], rates["occlusion"]) >= 0.8, rates

    # the CLI: a located class, its pixel share, the layer before the output for Grad-CAM
    from PIL import Image

    Image.fromarray(x[0, ..., 0].astype(np.uint8)).save(tmp_path / "canvas.png")
    args = ["explain", str(out), str(tmp_path / "canvas.png"), "-m", "gradcam", "--json"]
    assert main([*args, "--class", str(asked[0] - 1), "-o", str(tmp_path / "ex")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["task"], report["score"]) == ("segmentation", "pixel_share")
    (entry,) = report["inputs"][0]["explanations"]
    assert entry["class"] == str(asked[0] - 1) and entry["layer"] == "double_3_act_2"
    assert 0.0 < entry["pixel_share"] < 0.5  # a digit covers a small part of the canvas
    # by default the most common class (the background) is explained last
    assert main([*args[:-1], "--top", "2", "--json", "-o", str(tmp_path / "ex2")]) == 0
    top = json.loads(capsys.readouterr().out)["inputs"][0]
    assert top["predicted"]["class"] != "background"
    assert "background" not in [e["class"] for e in top["explanations"]]


@pytest.mark.slow
def test_predict_writes_mask_pngs_and_overlays_and_tiles_large_images(run, tmp_path, capsys):
    from PIL import Image

    from cnnspec.data.kinds.segmentation import canvases

    out, _ = run
    x, masks = canvases(8, seed=99)
    Image.fromarray(x[0, ..., 0]).save(tmp_path / "one.png")
    # a 64x64 image of four canvases: twice the input, predicted in overlapping tiles
    big = np.block([[x[1, ..., 0], x[2, ..., 0]], [x[3, ..., 0], x[4, ..., 0]]])
    truth = np.block([[masks[1], masks[2]], [masks[3], masks[4]]])
    Image.fromarray(big).save(tmp_path / "big.png")
    dest = tmp_path / "pred"
    args = ["predict", str(out), str(tmp_path / "one.png"), str(tmp_path / "big.png")]
    assert main([*args, "--out", str(dest), "--tile", "--json"]) == 0
    preds = {Path(p["file"]).name: p for p in json.loads(capsys.readouterr().out)}
    assert preds["big.png"]["tiles"] == 9 and preds["one.png"]["tiles"] == 1
    with Image.open(preds["big.png"]["mask"]) as img:
        assert img.mode == "P" and img.size == (64, 64)
        labels = np.asarray(img)
    with Image.open(preds["big.png"]["overlay"]) as img:
        assert img.mode == "RGB" and img.size == (64, 64)
    keep = truth != 255
    fg_true, fg_pred = (truth > 0) & keep, (labels > 0) & keep
    iou = (fg_true & fg_pred).sum() / max((fg_true | fg_pred).sum(), 1)
    assert iou > 0.5, iou  # digits found where they are, across the tiles' seams
    assert main([*args, "--out", str(dest / "plain")]) == 0  # not tiled: resized and back
    assert "big.png" in capsys.readouterr().out
    with Image.open(dest / "plain" / "big_mask.png") as img:
        assert img.size == (64, 64)


@pytest.mark.slow
def test_export_onnx_verifies_the_dense_output(run, tmp_path, capsys):
    out, _ = run
    dest = tmp_path / "unet.onnx"
    assert main(["export", str(out), "--format", "onnx", "--output", str(dest)]) == 0
    text = capsys.readouterr().out
    # the dense outputs compared: max abs diff over every pixel's probabilities, and the
    # argmax agreement over every pixel of the samples
    assert dest.is_file() and "same top-1 class on 100%" in text, text
    diff = float(text.split("max abs diff ")[1].split()[0])
    assert diff < 1e-4
    from PIL import Image

    from cnnspec.data.kinds.segmentation import canvases

    Image.fromarray(canvases(1, seed=7)[0][0, ..., 0]).save(tmp_path / "c.png")
    masks = []
    for i, model in enumerate((out, dest)):  # the run (Keras) and the export (onnxruntime)
        folder = tmp_path / f"predicted{i}"
        assert main(["predict", str(model), str(tmp_path / "c.png"), "--out", str(folder)]) == 0
        with Image.open(folder / "c_mask.png") as img:
            masks.append(np.asarray(img))
    assert np.array_equal(masks[0], masks[1])


# --- a user folder -----------------------------------------------------------------------------------


def user_folder(root: Path, n: int = 96) -> Path:
    """images/ (grey PNGs) and masks/ (palette PNGs) of the shipped canvases, on disk."""
    from PIL import Image

    from cnnspec.data.kinds.segmentation import canvases

    x, masks = canvases(n, seed=5)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.fromarray(x[i, ..., 0]).save(root / "images" / f"c{i:03d}.png")
        Image.fromarray(masks[i], mode="L").convert("P").save(root / "masks" / f"c{i:03d}.png")
    return root


@pytest.mark.slow
def test_a_user_folder_trains_and_resumes_bit_identically(tmp_path):
    import keras

    folder = str(user_folder(tmp_path / "data"))
    common = ["--data", folder, "--set", "train.schedule=constant"]  # cosine spans --epochs
    _train(tmp_path / "a", *common, "--epochs", "2")
    _train(tmp_path / "b", *common, "--epochs", "1")
    assert main(["train", "--resume", str(tmp_path / "b"), "--epochs", "2", "--quiet"]) == 0
    a = keras.saving.load_model(tmp_path / "a" / "model.keras").get_weights()
    b = keras.saving.load_model(tmp_path / "b" / "model.keras").get_weights()
    assert len(a) == len(b) and all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["task"] == "segmentation" and len(meta["class_names"]) == 11


def test_a_unet_whose_input_does_not_divide_is_refused_with_sizes_that_fit():
    text = UNET.read_text().replace("input: [32, 32, 1]", "input: [30, 30, 1]")
    with pytest.raises(SpecError) as exc:
        loads_spec(text, "unet.yaml")
    line = str(exc.value).splitlines()[0]
    assert line.startswith("unet.yaml:") and "received 15x15x32, 14x14x32" in line, line
    assert "input sizes that fit: 28x28x1 or 32x32x1" in line, line
    # the paper's valid-convolution U-Net fits other sizes: found by the same shape inference
    paper = (ROOT / "specs" / "unet.yaml").read_text().replace("[572, 572, 1]", "[570, 570, 1]")
    with pytest.raises(SpecError, match="input sizes that fit: 556x556x1 or 572x572x1"):
        loads_spec(paper, "unet.yaml")


FINE_TUNE = """\
name: seg_transfer
task: segmentation
input: [32, 32, 1]
backbone:
  model: {backbone}
  cut_at: basic_2_add             # 16x16x32
  trainable: false                # phase 1: the decoder only
  fine_tune: {{from: basic_2_conv_1, lr: 3.0e-4, epochs: 2}}
layers:
  - upsample: 2                   # back to 32x32
  - conv: 3x3, 32, p=same, relu
  - conv: 1x1, 11, softmax
train:
  data: digits_segmentation
  epochs: 4
  batch_size: 16
  optimizer: {{adam: {{lr: 3.0e-3}}}}
  metrics: [mean_iou]
"""


@pytest.mark.slow
def test_a_pretrained_backbone_is_fine_tuned_for_segmentation(tmp_path):
    """A frozen classifier backbone (digits 0-4) under a small decoder, then its last block
    unfrozen: phase 2 trains the segmentation loss into the backbone (was untested). Measured:
    test mean IoU 0.308 after phase 1, 0.405 after phase 2 (all background: 0.087)."""
    import keras

    backbone = ROOT / "specs" / "transfer_digits04_backbone.keras"
    spec = tmp_path / "seg_transfer.yaml"
    spec.write_text(FINE_TUNE.format(backbone=backbone))
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["epochs_done"] == 6
    phase1, final = m["phase1"]["test"]["mean_iou"], m["test"]["mean_iou"]
    assert final > phase1 and final > 3 * _background_baseline(), (phase1, final)
    assert m["per_class"]["outputs"]["conv_2"]["per_class"][0]["iou"] > 0.9

    source = keras.saving.load_model(backbone, compile=False)
    trained = keras.saving.load_model(out / "model.keras", compile=False).get_layer("backbone")
    for name in ("basic_2_conv_1", "basic_1_conv_1"):  # unfrozen in phase 2; frozen throughout
        before = source.get_layer(name).get_weights()
        after = trained.get_layer(name).get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
        assert same == (name == "basic_1_conv_1"), name
