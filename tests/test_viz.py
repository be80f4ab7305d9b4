"""cnnspec visualize: valid PNGs of the expected size with real content."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from _model_fixtures import assert_not_blank, digits_run, read_png, run_cli, write_digit_pngs

from cnnspec.errors import RunError
from cnnspec.modelio import load_keras_model
from cnnspec.viz.curves import plot_curves
from cnnspec.viz.features import layout_height, plot_features
from cnnspec.viz.filters import plot_filters

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    return load_keras_model(digits_run() / "model.keras")


@pytest.fixture(scope="module")
def digit(model) -> np.ndarray:
    from _model_fixtures import digits_split

    return digits_split("test")[0][0]


def _colourful(pixels: np.ndarray) -> float:
    """Share of pixels whose channels differ clearly (not grey)."""
    p = pixels.astype(int)
    return float(((p.max(axis=-1) - p.min(axis=-1)) > 30).mean())


def test_first_layer_filters_are_a_grey_grid(tmp_path, model):
    pic = plot_filters(model, tmp_path / "f.png")
    pixels = read_png(pic.path)
    # 8 filters -> 3 x 3 cells of 80 px + 6 px gaps (width at least 320), 44 px title band
    assert (pic.width, pic.height) == (320, 44 + 3 * 86 + 6)
    assert pixels.shape == (pic.height, pic.width, 3)
    assert_not_blank(pixels, min_colours=8)
    assert _colourful(pixels) < 0.01  # one input channel: grey kernels


def test_rgb_first_layer_filters_are_in_colour(tmp_path):
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(12, 5, name="rgb_conv")(inp)
    out = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(tmp_path / "rgb.keras")
    pic = plot_filters(load_keras_model(tmp_path / "rgb.keras"), tmp_path / "rgb.png")
    pixels = read_png(pic.path)
    assert (pic.width, pic.height) == (4 * 86 + 6, 44 + 3 * 86 + 6)  # 12 -> 3 rows x 4 cols
    assert_not_blank(pixels)
    assert _colourful(pixels) > 0.2


def test_deeper_layer_is_a_filters_by_channels_grid(tmp_path, model):
    pic = plot_filters(model, tmp_path / "c.png", layer="conv2")
    pixels = read_png(pic.path)
    # 16 filters x 8 input channels of 40 px (+2 px), 36 px label bands, 44 px title
    assert (pic.width, pic.height) == (36 + 8 * 42 + 6, 44 + 36 + 16 * 42 + 6)
    assert pixels.shape[:2] == (pic.height, pic.width)
    assert_not_blank(pixels)


def test_unknown_or_kernel_less_layers_are_refused(tmp_path, model):
    with pytest.raises(RunError, match="no layer 'conv3'.*did you mean 'conv2'"):
        plot_filters(model, tmp_path / "x.png", layer="conv3")
    with pytest.raises(RunError, match="layer 'pool1' has no 2D convolution kernel"):
        plot_filters(model, tmp_path / "x.png", layer="pool1")
    assert not (tmp_path / "x.png").exists()


def test_feature_maps_of_chosen_layers(tmp_path, model, digit):
    one = plot_features(model, digit, tmp_path / "one.png", ["conv1"])
    two = plot_features(model, digit, tmp_path / "two.png", ["conv1", "conv2"])
    default = plot_features(model, digit, tmp_path / "default.png")
    assert one.width == two.width == 8 * 100 + 4
    assert one.height == layout_height([8]) == 2 * (30 + 100) + 4
    assert two.height == layout_height([8, 16]) == one.height + 30 + 2 * 100  # 16 maps: 2 rows
    assert (default.width, default.height) == (two.width, two.height)  # default: conv layers
    for pic in (one, two):
        pixels = read_png(pic.path)
        assert pixels.shape[:2] == (pic.height, pic.width)
        assert_not_blank(pixels)
    # the maps depend on the image: another digit gives another picture
    blank = plot_features(model, np.zeros_like(digit), tmp_path / "blank.png", ["conv1"])
    assert not np.array_equal(read_png(blank.path), read_png(one.path))


def test_features_of_a_dense_layer_are_refused(tmp_path, model, digit):
    with pytest.raises(RunError, match=r"layer 'probs' outputs shape \(10,\), not .*feature maps"):
        plot_features(model, digit, tmp_path / "x.png", ["probs"])


def test_training_curves(tmp_path):
    pic = plot_curves(digits_run(), tmp_path / "curves.png", title="digits")
    pixels = read_png(pic.path)
    assert (pic.width, pic.height) == (1100, 420) and pixels.shape[:2] == (420, 1100)
    assert_not_blank(pixels)
    p = pixels.astype(int)
    blue = ((p[..., 2] - p[..., 0]) > 80).mean()  # train lines (tab:blue)
    orange = ((p[..., 0] - p[..., 2]) > 80).mean()  # validation lines (tab:orange)
    assert blue > 0.001 and orange > 0.001


def test_curves_without_validation_columns(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,accuracy\n1,2.0,0.3\n2,1.0,0.6\n3,0.5,0.8\n")
    pixels = read_png(plot_curves(history, tmp_path / "c.png").path)
    p = pixels.astype(int)
    assert ((p[..., 0] - p[..., 2]) > 80).mean() < 0.0005  # no validation line drawn
    assert_not_blank(pixels)
    with pytest.raises(RunError, match="no training history"):
        plot_curves(tmp_path / "nowhere", tmp_path / "d.png")
    (tmp_path / "bad.csv").write_text("epoch,acc\n1,0.5\n")
    with pytest.raises(RunError, match="no 'loss' column"):
        plot_curves(tmp_path / "bad.csv", tmp_path / "d.png")


def test_cli_writes_pictures_into_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(digits_run(), run)
    image = write_digit_pngs(tmp_path / "imgs", [1750])[0]
    assert run_cli(["visualize", "filters", run]) == 0
    assert run_cli(["visualize", "filters", run, "--layer", "conv2"]) == 0
    assert run_cli(["visualize", "features", run, image, "--layers", "conv1,relu1,pool2"]) == 0
    assert run_cli(["visualize", "curves", run]) == 0
    out = capsys.readouterr().out
    for name in (
        "filters_conv1.png",
        "filters_conv2.png",
        f"features_{image.stem}.png",
        "curves.png",
    ):
        assert str(run / "viz" / name) in out
        assert_not_blank(read_png(run / "viz" / name))
    assert run_cli(["visualize", "features", run, image, "--layers", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no layer 'nope'" in err and "Traceback" not in err


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz 'dot' not installed")
def test_cli_graph_draws_the_architecture(tmp_path):
    out = tmp_path / "arch.png"
    assert run_cli(["visualize", "graph", REPO / "specs" / "lenet5.yaml", "-o", out]) == 0
    pixels = read_png(out)
    assert pixels.shape[0] > 200
    assert_not_blank(pixels, min_colours=8)


def test_cli_graph_dot_text(tmp_path):
    out = tmp_path / "arch.dot"
    assert run_cli(["visualize", "graph", REPO / "specs" / "lenet5.yaml", "-o", out]) == 0
    assert out.read_text().lstrip().startswith("digraph")


def test_curves_of_runs_name_and_of_a_transfer_runs_phase_2(tmp_path, capsys):
    from cnnspec.viz.curves import read_history

    runs = tmp_path / "runs" / "net"
    older, newer = runs / "20240101-000000", runs / "20240102-000000"
    for run, n in ((older, 2), (newer, 3)):
        run.mkdir(parents=True)
        rows = "".join(f"{e},{1 / e},{0.5 + e / 10}\n" for e in range(1, n + 1))
        (run / "history.csv").write_text("epoch,loss,accuracy\n" + rows)
    (newer / "history_phase2.csv").write_text("epoch,loss,accuracy\n1,0.2,0.9\n2,0.1,0.95\n")
    # runs/<name> is its latest run, as for every other command (was "no training history")
    assert run_cli(["visualize", "curves", runs]) == 0
    assert str(newer / "viz" / "curves.png") in capsys.readouterr().out
    h = read_history(runs)
    assert h["epoch"] == [1, 2, 3, 4, 5]  # phase 2 numbered on after phase 1
    assert h["loss"][3:] == [0.2, 0.1] and h["phase"] == [1, 1, 1, 2, 2]
    pixels = read_png(newer / "viz" / "curves.png").astype(int)
    green = ((pixels[..., 1] - pixels[..., 0]) > 60) & ((pixels[..., 1] - pixels[..., 2]) > 60)
    assert green.mean() > 0.0002  # the phase-2 marker line
    assert read_history(older)["epoch"] == [1, 2]
