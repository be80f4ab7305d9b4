"""init: pretrained weights into an edited spec (issue 17): matching, transfer table, loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _keras_sources import saved_application
from _model_fixtures import run_cli

from cnnspec.init import plan
from cnnspec.init.load import adapt_kernel
from cnnspec.init.match import ADAPTED, FRESH, LOADED, MISMATCH
from cnnspec.init.targets import WEIGHT_SHAPES, spec_targets
from cnnspec.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
RESNET50 = ROOT / "specs" / "resnet50.yaml"
SIZE = 32  # keras.applications' smallest ResNet input: cheap to build


@pytest.fixture(scope="module")
def resnet50_file():
    """keras.applications.ResNet50(weights=None), logits out, as .keras, its batch-norm
    statistics measured on fixed images: with random ones the logits hardly depend on the input
    and an output comparison proves little (tests/_keras_sources.py)."""
    return saved_application("ResNet50", SIZE, calibrated=True)


def assert_same_logits(model, source_model) -> None:
    """Equal within 1e-5 relative, on logits that move with the input (not vacuously equal)."""
    import keras

    x = np.random.default_rng(2).uniform(0, 1, (2, SIZE, SIZE, 3)).astype("float32")
    ours = keras.ops.convert_to_numpy(model(x))
    theirs = keras.ops.convert_to_numpy(source_model(x))
    tol = 1e-5 * max(1.0, float(np.abs(theirs).max()))
    assert np.abs(ours - theirs).max() <= tol, (np.abs(ours - theirs).max(), tol)
    other = keras.ops.convert_to_numpy(source_model(x[::-1] * 0.5))
    assert np.abs(other - theirs).max() > 100 * tol  # the source reacts to its input


def _spec(tmp_path: Path, source: Path, edits: dict | None = None, init: str = "") -> Path:
    text = RESNET50.read_text()
    text = text.replace("input: [224, 224, 3]", f"input: [{SIZE}, {SIZE}, 3]\npreprocess: none")
    text = text.replace("name: resnet50", f"name: resnet50_edit\ninit: {{from: {source}{init}}}")
    for old, new in (edits or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


EDITED = {  # 1-channel input, a dropout before a new 5-class head
    f"input: [{SIZE}, {SIZE}, 3]": f"input: [{SIZE}, {SIZE}, 1]",
    "  - dense: 1000, softmax": "  - dropout: 0.3\n  - dense: 5, softmax",
}


@pytest.mark.slow
def test_resnet50_spec_loads_every_keras_application_weight(resnet50_file, tmp_path):

    from cnnspec.build import build_model
    from cnnspec.init import apply

    source_model, path = resnet50_file
    spec = load_spec(_spec(tmp_path, path, {"dense: 1000, softmax": "dense: 1000"}))
    table, _ = plan(spec)
    assert table.counts() == {LOADED: 107}  # 53 conv + 53 bn + 1 dense
    assert table.share == 1.0 and table.source_share == 1.0
    # keras.applications names its layers differently: structure paired them, the projection
    # shortcut with conv*_block1_0_conv (created after the body's second conv in Keras).
    pairs = {r.layer: r.source for r in table.rows}
    assert pairs["conv2_block1_shortcut"] == "conv2_block1_0_conv"
    assert pairs["conv2_block1_conv_3"] == "conv2_block1_3_conv"
    assert pairs["bottleneck_12_bn_3"] == "conv5_block3_3_bn"
    model = build_model(spec)
    assert apply(model, spec).loaded_params == spec.graph.total_params
    assert_same_logits(model, source_model)


@pytest.mark.slow
def test_resnet50_spec_loads_a_legacy_h5_in_keras_layer_order(resnet50_file, tmp_path):
    """A legacy HDF5 file (the format of keras:Name's ImageNet weights) keeps no graph, only
    Keras' own layer order (by depth: a projection shortcut after the body's second conv, 28
    places away from the graph order for ResNet-50): the spec's layers are put in that order
    to pair, so every weight lands where it belongs and the outputs are equal."""

    from cnnspec.build import build_model
    from cnnspec.init import apply

    source_model, _ = resnet50_file
    h5 = tmp_path / "resnet50.h5"
    source_model.save(h5)
    spec = load_spec(_spec(tmp_path, h5, {"dense: 1000, softmax": "dense: 1000"}))
    table, index = plan(spec)
    assert index.order == "keras" and table.counts() == {LOADED: 107}
    assert {r.layer: r.source for r in table.rows}["conv2_block1_shortcut"] == "conv2_block1_0_conv"
    model = build_model(spec)
    apply(model, spec)
    assert_same_logits(model, source_model)


@pytest.mark.slow
def test_edited_resnet50_loads_99_percent_and_names_the_rest(resnet50_file, tmp_path):
    import keras

    from cnnspec.build import build_model
    from cnnspec.init import apply

    source_model, path = resnet50_file
    spec = load_spec(_spec(tmp_path, path, EDITED, ", adapt_channels: sum"))
    table = apply(model := build_model(spec), spec)
    status = {r.layer: r.status for r in table.rows}
    assert status["conv1"] == ADAPTED and status["predictions"] == MISMATCH
    assert list(status.values()).count(LOADED) == 105
    assert table.share >= 0.99
    # sum: a grey image gives the features its 3-channel copy gave in the source.
    grey = np.random.default_rng(3).uniform(0, 1, (2, SIZE, SIZE, 1)).astype("float32")
    feats = keras.Model(model.input, model.get_layer("gavgpool_1").output)
    src = keras.Model(source_model.input, source_model.get_layer("avg_pool").output)
    ours = keras.ops.convert_to_numpy(feats(grey))
    theirs = keras.ops.convert_to_numpy(src(np.repeat(grey, 3, axis=-1)))
    # relative: the summed kernel adds its own rounding; a wrong rule is off by ~100 %
    assert np.abs(ours - theirs).max() <= 1e-3 * max(1.0, float(np.abs(theirs).max()))


def test_without_adapt_channels_the_first_conv_is_a_shape_mismatch(resnet50_file, tmp_path):
    spec = load_spec(_spec(tmp_path, resnet50_file[1], EDITED))
    rows = {r.layer: r for r in plan(spec)[0].rows}
    assert rows["conv1"].status == MISMATCH
    assert rows["conv1"].shapes[0] == (7, 7, 1, 64)
    assert rows["conv1"].source_shapes[0] == (7, 7, 3, 64)


def test_min_loaded_stops_validate_with_one_line(resnet50_file, tmp_path, capsys):
    spec = _spec(tmp_path, resnet50_file[1], EDITED, ", min_loaded: 0.9999")
    assert run_cli(["validate", spec]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "under min_loaded" in err[0] and "shape mismatch" in err[0]


def test_skip_and_summary_json(resnet50_file, tmp_path, capsys):
    spec = _spec(tmp_path, resnet50_file[1], init=", skip: [predictions, 'conv5_*']")
    assert run_cli(["summary", "--json", spec]) == 0
    init = json.loads(capsys.readouterr().out)["init"]
    rows = {r["layer"]: r for r in init["rows"]}
    assert rows["predictions"]["status"] == "skipped"
    assert rows["conv5_block1_conv_1"]["status"] == "skipped"
    assert rows["bottleneck_12_conv_1"]["status"] == LOADED  # its own name is not conv5_*
    assert 0.5 < init["share"] < 1.0


def test_inserted_conv_shifts_nothing(resnet50_file, tmp_path):
    """One more conv in the middle (Keras' H5 counter scheme would shift every later conv)."""
    extra = {
        "  - bottleneck: {n: 256, s: 2}\n": "  - conv: 1x1, 128\n  - bottleneck: {n: 256, s: 2}\n"
    }
    table = plan(load_spec(_spec(tmp_path, resnet50_file[1], extra)))[0]
    # Every layer loads but the new conv and the two of conv4_block1 that now read 128 channels.
    assert table.counts()[LOADED] == 105
    left = {r.layer: r.status for r in table.rows if r.status != LOADED}
    assert set(left) == {"conv_1", "conv4_block1_shortcut", "conv4_block1_conv_1"}
    assert set(left.values()) <= {FRESH, MISMATCH}


@pytest.mark.parametrize("mode", ["sum", "mean", "repeat"])
@pytest.mark.parametrize("channels", [1, 2, 5])
def test_adapt_kernel_rules(mode, channels):
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype("float32")
    out = adapt_kernel(kernel, channels, mode)
    assert out.shape == (3, 3, channels, 4)
    if mode == "sum":  # a grey input replicated on every channel: the source's response
        assert np.allclose(out.sum(axis=2), kernel.sum(axis=2), atol=1e-5)
    elif mode == "mean":
        assert np.allclose(out[:, :, 0], kernel.mean(axis=2), atol=1e-6)
    else:  # timm: tiled, scaled by 3 / channels
        assert np.allclose(out[:, :, 0], kernel[:, :, 0] * 3 / channels, atol=1e-6)


@pytest.mark.parametrize("cls", list(WEIGHT_SHAPES), ids=lambda c: c.__name__)
def test_weight_shapes_match_keras(cls):
    """Each rule gives the shapes Keras creates, in Keras' order (and sums to params())."""
    from cnnspec.build import build_model

    samples = {
        "ConvSpec": "conv: 3x3, 6, groups=2",
        "DepthwiseConvSpec": "dwconv: {K: 3, multiplier: 2}",
        "SeparableConvSpec": "sepconv: 3x3, 5",
        "ConvTransposeSpec": "convT: 3x3, 5, s=2",
        "DenseSpec": "dense: 7",
        "BatchNormSpec": "bn: {center: false}",
        "LayerNormSpec": "layernorm",
        "LayerScaleSpec": "layerscale",
        "NormalizeSpec": "normalize: {mean: 0.5, variance: 2.0}",
    }
    item = samples[cls.__name__]
    flat = "  - flatten\n" if cls.__name__ == "DenseSpec" else ""
    text = f"name: t\ninput: [6, 6, 4]\npreprocess: none\nlayers:\n{flat}  - {item}\n"
    from cnnspec.spec.loader import loads_spec

    spec = loads_spec(text)
    (target,), _ = spec_targets(spec)
    layer = build_model(spec).get_layer(target.name)
    assert target.shapes == tuple(tuple(w.shape) for w in layer.weights)
    assert target.params == spec.graph.total_params


def test_keras_weights_h5_is_refused_with_one_line(tmp_path, capsys):
    import h5py

    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/conv2d/vars/0", data=np.zeros((3, 3, 1, 2)))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        f"name: s\ninit: {{from: {path}}}\ninput: [8, 8, 1]\nlayers:\n  - conv: 3x3, 2\n"
    )
    assert run_cli(["validate", spec]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "keeps no layer names" in err[0]


def test_keras_application_source_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ninit: {from: 'keras:ResNet50'}\ninput: [32, 32, 3]\nlayers:\n  - conv: 3x3, 2\n"
    )
    assert run_cli(["validate", spec]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot get the ImageNet weights of ResNet50 (offline)" in err[0]
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in err[0]


# --- a trained run as the source: train --init RUN_DIR, features --init ------------------------

LENET5 = ROOT / "specs" / "lenet5.yaml"


@pytest.fixture(scope="module")
def lenet5_run(tmp_path_factory):
    """specs/lenet5.yaml trained 1 epoch on digits: a run folder."""
    out = tmp_path_factory.mktemp("run") / "lenet5"
    assert run_cli(["train", LENET5, "--epochs", "1", "--out", out, "-q"]) == 0
    return out


@pytest.mark.slow
def test_train_from_a_run_with_another_head(lenet5_run, tmp_path):
    """An edited lenet5 (a 32-unit layer instead of 84) trained from the run: the table is in
    metrics.json, the convs and the first dense load by name, the changed head is a mismatch."""
    spec = tmp_path / "edited.yaml"
    spec.write_text(LENET5.read_text().replace("dense: 84, tanh", "dense: 32, tanh"))
    out = tmp_path / "edited"
    assert run_cli(["train", spec, "--init", lenet5_run, "--epochs", "1", "--out", out, "-q"]) == 0
    init = json.loads((out / "metrics.json").read_text())["init"]
    status = {r["layer"]: r["status"] for r in init["rows"]}
    assert status == {
        "conv_1": LOADED,
        "conv_2": LOADED,
        "dense_1": LOADED,
        "dense_2": MISMATCH,
        "dense_3": MISMATCH,
    }
    loaded = 156 + 2_416 + 48_120
    assert init["loaded_params"] == loaded
    assert init["total_params"] == loaded + 120 * 32 + 32 + 32 * 10 + 10
    assert init["share"] == pytest.approx(loaded / init["total_params"], abs=1e-6)
    assert init["source"] == str(lenet5_run / "model.keras")


@pytest.mark.slow
def test_features_init_from_a_run_equal_the_runs_features(lenet5_run, tmp_path, capsys):
    """features SPEC --init RUN: every weight loads, so the features (the last dense layer's
    input) are the ones the trained run itself gives."""
    ours, theirs = tmp_path / "ours.npz", tmp_path / "theirs.npz"
    assert run_cli(["features", LENET5, "--init", lenet5_run, "-o", ours]) == 0
    assert "61,706 of 61,706 parameters initialised (100.00%" in capsys.readouterr().out
    assert run_cli(["features", lenet5_run, "-o", theirs]) == 0
    with np.load(ours) as a, np.load(theirs) as b:
        assert a["features"].shape == (len(b["labels"]), 84)
        assert np.abs(a["features"] - b["features"]).max() <= 1e-5
        assert (a["labels"] == b["labels"]).all()


def test_features_of_a_spec_without_backbone_or_init_is_one_line(tmp_path, capsys):
    assert run_cli(["features", LENET5, "-o", tmp_path / "f.npz"]) == 1
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "no backbone" in line and "init:" in line
