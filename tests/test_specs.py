"""Every shipped spec validates, builds, and its inferred numbers equal Keras's; the standard
architectures reproduce their papers / keras.applications."""

import numpy as np
import pytest
from conftest import ROOT, SPECS

from cnnspec.spec import load_spec

# Reference numbers: (total params, (MACs low, MACs high)) from the papers / keras.applications.
REFERENCE = {
    "lenet5": 61_706,  # LeCun et al. 1998
    "vgg16": 138_357_544,  # keras.applications.VGG16(weights=None)
    "resnet50": 25_636_712,  # keras.applications.ResNet50(weights=None), convs with bias
}
MACS_G = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
# GoogLeNet Table 1 (Szegedy et al. 2015) per inception module: (params in K, ops in M).
GOOGLENET_TABLE1 = {
    "inception_3a": (159, 128),
    "inception_3b": (380, 304),
    "inception_4a": (364, 73),
    "inception_4b": (437, 88),
    "inception_4c": (463, 100),
    "inception_4d": (580, 119),
    "inception_4e": (840, 170),
    "inception_5a": (1072, 54),
    "inception_5b": (1388, 71),
}
# Table 1's params entry for 4c (463K) contradicts the same row's columns and ops: its
# columns (128, 128, 256, 24, 64, 64 on 512 channels) give 509K weights, and 509K x 14x14 =
# 100M, exactly the row's ops entry. We check 4c against its ops (as every row), not that typo.
TABLE1_PARAMS_TYPO = {"inception_4c"}


def _overrides(path):
    # Specs with a downloadable backbone are built without downloading its weights.
    import yaml

    data = yaml.safe_load(path.read_text())
    backbone = data.get("backbone") or {}
    return (
        ["backbone.weights=none"]
        if backbone.get("weights", "imagenet") == "imagenet" and backbone
        else []
    )


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_shipped_spec_builds_with_inferred_shapes_and_params(path):
    from cnnspec.build import build_model

    spec = load_spec(path, _overrides(path))
    model = build_model(spec, heads=True)
    names = {layer.name for layer in model.layers}
    for node in spec.graph.nodes.values():
        if node.spec is None or node.name not in names:
            continue
        layer = model.get_layer(node.name)
        assert tuple(layer.output.shape[1:]) == node.shape, node.name
        extra = (
            model.get_layer(f"{node.name}_pad").count_params() if f"{node.name}_pad" in names else 0
        )
        assert layer.count_params() + extra == node.params, node.name
    inference = build_model(spec)
    assert inference.count_params() == spec.graph.total_params
    if spec.num_classes:
        assert inference.output.shape[-1] == spec.num_classes


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reference_parameter_counts(name):
    assert load_spec(f"specs/{name}.yaml").graph.total_params == REFERENCE[name]


def test_alexnet_has_about_60_million_parameters():
    total = load_spec("specs/alexnet.yaml").graph.total_params
    assert abs(total - 60e6) / 60e6 < 0.05, total


@pytest.mark.parametrize("name", sorted(MACS_G))
def test_resnet_macs_within_10_percent_of_the_paper(name):
    macs = load_spec(f"specs/{name}.yaml").graph.total_macs / 1e9
    assert abs(macs - MACS_G[name]) / MACS_G[name] < 0.10, macs


def test_googlenet_inception_blocks_match_table1_and_macs():
    spec = load_spec("specs/googlenet.yaml")
    g = spec.graph
    for block, (ref_k, ref_ops) in GOOGLENET_TABLE1.items():
        params = sum(n.params for n in g.nodes.values() if n.block == block)
        macs = sum(n.macs for n in g.nodes.values() if n.block == block)
        if block not in TABLE1_PARAMS_TYPO:
            assert abs(params / 1000 - ref_k) / ref_k < 0.05, (block, params)
        assert abs(macs / 1e6 - ref_ops) / ref_ops < 0.07, (block, macs)
    assert abs(g.total_macs / 1e9 - 1.5) / 1.5 < 0.10, g.total_macs
    assert set(g.heads) == {"aux1", "aux2"}
    assert spec.loss_weights() == {"predictions": 1.0, "aux1": 0.3, "aux2": 0.3}


@pytest.mark.parametrize("name", ["small_resnet", "small_inception", "googlenet_small"])
def test_saved_model_reloads_in_safe_mode_with_identical_outputs(name, tmp_path):
    import keras

    import cnnspec.build  # noqa: F401 - registers the custom layers
    from cnnspec.build import build_model
    from cnnspec.spec import loads_spec

    if name == "googlenet_small":  # LRN + L2 pooling + inception + heads, at a small size
        spec = loads_spec(
            "name: g\ninput: [32, 32, 3]\nlayers:\n  - conv: 3x3, 8, p=same, relu\n  - lrn: 5\n"
            "  - l2pool: 2x2\n  - inception: 4, 4, 8, 2, 4, 4\n    name: inc\n  - gl2pool\n"
            "  - dense: 3, softmax\nheads:\n  aux:\n    from: inc\n    layers: [gavgpool, 'dense: 3, softmax']\n"
        )
    else:
        spec = load_spec(f"specs/{name}.yaml")
    model = build_model(spec)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(1).uniform(0, 255, (3, *spec.input)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), again.predict(x, verbose=0))
    assert [layer.name for layer in model.layers] == [layer.name for layer in again.layers]
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)


def test_relative_paths_are_read_beside_the_spec_first(tmp_path, monkeypatch):
    (tmp_path / "d.npz").write_bytes(b"")
    spec_file = tmp_path / "net.yaml"
    spec_file.write_text(
        "name: t\ninput: [8, 8, 1]\nlayers: [flatten, 'dense: 2, softmax']\ntrain: {data: d.npz}\n"
    )
    monkeypatch.chdir(ROOT)
    assert load_spec(spec_file).train.data == str(tmp_path / "d.npz")
    spec_file.write_text(spec_file.read_text().replace("d.npz", "digits"))
    assert load_spec(spec_file).train.data == "digits"  # a named dataset is never a path


def test_set_reaches_into_a_default_choice():
    from cnnspec.spec import loads_spec

    text = "name: t\ninput: [8, 8, 1]\nlayers: [flatten, 'dense: 2, softmax']\n"
    spec = loads_spec(text, overrides=["train.optimizer.lr=0.05"])
    assert spec.train.optimizer.kind == "adam" and spec.train.optimizer.params.lr == 0.05
    spec = loads_spec(
        text + "train: {optimizer: {sgd: {momentum: 0.9}}}\n", overrides=["train.optimizer.lr=0.2"]
    )
    assert spec.train.optimizer.kind == "sgd" and spec.train.optimizer.params.lr == 0.2
    assert spec.train.optimizer.params.momentum == 0.9


@pytest.mark.parametrize(
    "app,name",
    [("ResNet50", "resnet50"), ("MobileNetV2", "mobilenetv2"), ("DenseNet121", "densenet121")],
)
def test_backbone_macs_agree_with_the_same_network_written_as_a_spec(app, name):
    from cnnspec.spec import loads_spec

    backbone = loads_spec(
        f"name: t\ninput: [224, 224, 3]\nbackbone: {{model: {app}, weights: none}}\nlayers: [gavgpool]\n"
    ).graph.nodes["backbone"]
    g = load_spec(f"specs/{name}.yaml").graph
    convs = g.total_macs - g.nodes["predictions"].macs  # the same network without its classifier
    assert abs(backbone.macs - convs) / convs < 0.01, (backbone.macs, convs)


# --- U-Net, ConvNeXt-T, ShuffleNet: against their references, weight for weight ---------------

NEW_ARCHITECTURES = {
    # name: (reference builder, parameters, --set overrides for the output comparison)
    "unet": ("keras_unet", 31_030_658, ["preprocess=none", "input=[188, 188, 1]"]),
    "convnext_tiny": ("ConvNeXtTiny", 28_589_128, []),
    "shufflenet": ("keras_shufflenet", 1_890_208, ["preprocess=none"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NEW_ARCHITECTURES))
def test_spec_equals_its_reference_weight_for_weight(name):
    import _model_fixtures as fx
    import keras

    from cnnspec.build import build_model

    ref_name, params, overrides = NEW_ARCHITECTURES[name]
    full = load_spec(f"specs/{name}.yaml")
    assert full.graph.total_params == params
    spec = load_spec(f"specs/{name}.yaml", overrides)
    ours = build_model(spec)
    if name == "unet":  # the paper's sizes at 572x572; outputs compared at a 188x188 input
        assert full.graph.nodes[full.graph.output].shape == (388, 388, 2)
        ref = fx.keras_unet(tuple(spec.input))
    elif name == "convnext_tiny":
        ref = keras.applications.ConvNeXtTiny(weights=None)
    else:
        ref = getattr(fx, ref_name)()
    assert ours.count_params() == ref.count_params() == params
    fx.copy_weights(ours, ref)
    x = np.random.default_rng(1).uniform(0, 255, (2, *spec.input)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), ref.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
