"""backbone: in the spec: validation without TensorFlow, exact shapes/params, errors, building.

The .keras backbone is the shipped specs/transfer_digits04_backbone.keras (small_resnet trained
on digits 0-4); keras.applications backbones are checked against Keras built with weights=None.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from cnnspec.errors import SpecError
from cnnspec.spec import loads_spec
from cnnspec.spec.backbone import applications

BACKBONE = "specs/transfer_digits04_backbone.keras"


def _spec(backbone: str, input_shape=(32, 32, 1), layers="  - dense: 5, softmax"):
    return loads_spec(
        f"name: t\ninput: {list(input_shape)}\nbackbone:\n{backbone}\nlayers:\n{layers}\n",
        file="t.yaml",
    )


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


# --- .keras backbones ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, shape",
    [
        ("", (64,)),  # default: drop the top (the input of the last dense layer)
        ("  cut_at: basic_2_out", (16, 16, 32)),
        ("  cut_at: basic_2_out\n  pooling: max", (32,)),
        ("  cut_at: basic_1_add\n  trainable: true", (32, 32, 16)),
        ("  cut_at: dense_1", (5,)),
    ],
)
def test_keras_file_backbone_shapes_and_params_equal_keras(extra, shape):
    from cnnspec.build import build_model

    layers = "  - flatten\n  - dense: 3, softmax" if len(shape) > 1 else "  - dense: 3, softmax"
    spec = _spec(f"  model: {BACKBONE}\n{extra}", layers=layers)
    node = spec.graph.nodes["backbone"]
    assert node.shape == shape
    model = build_model(spec)
    backbone = model.get_layer("backbone")
    assert tuple(backbone.output.shape[1:]) == shape
    assert backbone.count_params() == node.params
    assert _count(backbone.non_trainable_weights) == node.non_trainable
    assert _count(model.trainable_weights) == spec.graph.trainable_params
    if "trainable: true" not in extra:
        assert not backbone.trainable_weights  # phase 1: frozen


def test_keras_file_backbone_keeps_the_pretrained_weights_and_outputs():
    import keras

    from cnnspec.build import build_model

    source = keras.saving.load_model(BACKBONE, safe_mode=True, compile=False)
    flat = "  - flatten\n  - dense: 5, softmax"
    spec = _spec(f"  model: {BACKBONE}\n  cut_at: basic_2_out", layers=flat)
    backbone = build_model(spec).get_layer("backbone")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 1)).astype("float32")
    cut = keras.Model(source.input, source.get_layer("basic_2_out").output)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), cut.predict(x, verbose=0), atol=1e-5)
    # weights: none keeps the architecture and draws fresh weights
    fresh = build_model(
        _spec(f"  model: {BACKBONE}\n  cut_at: basic_2_out\n  weights: none", layers=flat)
    )
    assert not np.allclose(
        fresh.get_layer("backbone").get_layer("conv_1").get_weights()[0],
        source.get_layer("conv_1").get_weights()[0],
    )


def test_summary_shows_the_backbone_as_one_row():
    from cnnspec.commands.spec_cmds import summary_rows

    spec = _spec(f"  model: {BACKBONE}\n  cut_at: basic_2_out\n  pooling: avg")
    rows = [r for r in summary_rows(spec) if r["name"] == "backbone"]
    assert len(rows) == 1
    text = json.dumps(rows[0])
    assert "basic_2_out" in text and "frozen" in text
    assert spec.graph.nodes["backbone"].params == rows[0]["params"] > 0
    assert spec.graph.trainable_params == 32 * 5 + 5


LOCATED = [
    (f"  model: {BACKBONE}\n  cut_at: basic_2_ot", "t.yaml:5:3", "did you mean 'basic_2_out'"),
    ("  model: MobileNetv2", "t.yaml:4:3", "did you mean 'MobileNetV2'"),
    ("  model: nowhere/model.keras", "t.yaml:4:3", "backbone file not found"),
    (f"  model: {BACKBONE}\n  weights: imagenet", "t.yaml:5:3", "carries its own weights"),
    (f"  model: {BACKBONE}\n  fine_tune: {{from: basic_9_conv_1}}", "t.yaml:5:3", "did you mean"),
    (f"  model: {BACKBONE}\n  fine_tune: {{top: 3, all: true}}", "t.yaml:5:3", "exactly one of"),
    (f"  model: {BACKBONE}\n  pooling: average", "t.yaml:5:3", "pooling"),
    (f"  model: {BACKBONE}\n  pooling: avg", "t.yaml:3", "needs a feature map"),
    (
        f"  model: {BACKBONE}\n  cut_at: basic_1_out\n  fine_tune: {{from: basic_3_conv_1}}",
        "t.yaml:3",
        "is not part of the backbone cut at 'basic_1_out'",
    ),
]


@pytest.mark.parametrize("backbone, where, text", LOCATED, ids=[t for _, _, t in LOCATED])
def test_backbone_errors_are_located_one_liners(backbone, where, text):
    with pytest.raises(SpecError) as info:
        _spec(backbone)
    message = str(info.value)
    assert message.startswith(where), message
    assert text in message, message
    assert "\n" not in message.strip(), message


def test_keras_file_backbone_checks_the_input_shape():
    with pytest.raises(SpecError, match=r"takes 32x32x1 images.*input: \[32, 32, 1\]"):
        _spec(f"  model: {BACKBONE}", input_shape=(28, 28, 1))


def test_validation_never_imports_tensorflow():
    code = (
        "import sys; from cnnspec.spec import load_spec;"
        "load_spec('specs/transfer_digits59.yaml');"
        "load_spec('specs/transfer_resnet50_finetune.yaml');"
        "load_spec('specs/transfer_mobilenetv2_features.yaml');"
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


# --- keras.applications ------------------------------------------------------------------------

GAP = "  - gavgpool\n  - dense: 5, softmax"
APPS = {  # model -> an input size unlike its default (exercises every padding rule)
    "MobileNetV2": (97, 131, 3),
    "ResNet50": (75, 75, 3),
    "InceptionV3": (139, 150, 3),
    "EfficientNetB0": (67, 91, 3),
    "NASNetMobile": (97, 97, 3),
    "MobileNetV3Small": (80, 80, 3),
    "ConvNeXtTiny": (64, 64, 3),
    "DenseNet121": (65, 65, 3),
}


def test_every_keras_application_cnn_is_in_the_table():
    names = set(applications())
    wanted = {
        "ResNet50", "ResNet101", "ResNet152", "ResNet50V2", "ResNet101V2", "ResNet152V2",
        "VGG16", "VGG19", "InceptionV3", "InceptionResNetV2", "Xception", "MobileNet",
        "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "DenseNet121", "DenseNet169",
        "DenseNet201", "NASNetMobile", "NASNetLarge", "EfficientNetB0", "EfficientNetB7",
        "EfficientNetV2B0", "EfficientNetV2L", "ConvNeXtTiny", "ConvNeXtXLarge",
    }  # fmt: skip
    assert wanted <= names, wanted - names


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(APPS))
def test_application_layer_shapes_and_params_equal_keras_at_other_sizes(name):
    from cnnspec.build import build_model
    from cnnspec.build.backbone import network_layers

    shape = APPS[name]
    spec = _spec(f"  model: {name}\n  weights: none", input_shape=shape, layers=GAP)
    info = spec.backbone.info(shape)
    backbone = build_model(spec).get_layer("backbone")
    layers = network_layers(backbone)
    assert [la.name for la in layers] == info.names[1:]
    for layer in layers:
        assert tuple(layer.output.shape[1:]) == info.by_name[layer.name].shape, layer.name
    assert backbone.count_params() == spec.graph.nodes["backbone"].params
    assert tuple(backbone.output.shape[1:]) == spec.graph.nodes["backbone"].shape


def test_application_minimum_input_and_channels_are_checked():
    with pytest.raises(SpecError, match=r"InceptionV3 needs images of at least 75x75"):
        _spec("  model: InceptionV3", input_shape=(64, 64, 3))
    with pytest.raises(SpecError, match="ImageNet weights need 3 channels"):
        _spec("  model: MobileNetV2", input_shape=(96, 96, 1))
    with pytest.raises(SpecError, match="did you mean 'block_13_expand'"):
        _spec("  model: MobileNetV2\n  cut_at: block_13_expnd", input_shape=(96, 96, 3))
    spec = _spec("  model: MobileNetV2\n  weights: none", input_shape=(96, 96, 1), layers=GAP)
    assert spec.graph.nodes["backbone"].shape == (3, 3, 1280)


@pytest.mark.parametrize(
    "name, module",
    [("ResNet50", "resnet50"), ("MobileNetV2", "mobilenet_v2"), ("DenseNet121", "densenet")],
)
def test_preprocessing_inside_the_graph_equals_preprocess_input(name, module):
    import keras

    from cnnspec.build.backbone import ImagenetPreprocess

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = getattr(keras.applications, module).preprocess_input(x.copy())
    layer = ImagenetPreprocess(applications()[name]["preprocess"])
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-4)


def _online() -> bool:
    import socket

    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="checks the offline failure; this machine is online")
def test_imagenet_weights_offline_fail_fast_naming_the_file(tmp_path):
    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras_home")}
    from cnnspec.build.backbone import weight_file

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cnnspec.cli",
            "build",
            "specs/transfer_mobilenetv2_features.yaml",
            "-o",
            str(tmp_path / "m.keras"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip  (no download retries: it fails at the first refused connection)
    assert done.returncode == 1, done.stderr
    expected = tmp_path / "keras_home" / "models" / weight_file("MobileNetV2", (160, 160, 3))
    assert expected.name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    assert str(expected) in done.stderr, done.stderr
    assert "weights: path" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "backbone, shape",
    [
        (f"  model: {BACKBONE}\n  cut_at: basic_2_out", (32, 32, 1)),
        ("  model: MobileNetV2\n  weights: none", (32, 32, 3)),
    ],
    ids=["keras-file", "MobileNetV2"],
)
def test_models_with_a_backbone_save_and_reload_safely(backbone, shape, tmp_path):
    from cnnspec.build import build_model
    from cnnspec.modelio import load_keras_model

    model = build_model(_spec(backbone, input_shape=shape, layers=GAP))
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras")  # config checked, safe_mode=True
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert len(loaded.trainable_weights) == len(model.trainable_weights) == 2  # still frozen


def test_weights_path_loads_a_saved_application_and_preprocesses_inside(tmp_path):
    import keras

    from cnnspec.build import build_model

    shape = (40, 40, 3)
    source = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=shape)
    source.save_weights(tmp_path / "mnv2.weights.h5")
    spec = _spec(
        f"  model: MobileNetV2\n  weights: {tmp_path / 'mnv2.weights.h5'}",
        input_shape=shape,
        layers=GAP,
    )
    backbone = build_model(spec).get_layer("backbone")
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    expected = source.predict(keras.applications.mobilenet_v2.preprocess_input(x.copy()), verbose=0)
    np.testing.assert_allclose(backbone.predict(x, verbose=0), expected, atol=1e-4)
    with pytest.raises(SpecError, match="weights file not found"):
        _spec("  model: MobileNetV2\n  weights: nowhere.weights.h5", input_shape=shape, layers=GAP)
