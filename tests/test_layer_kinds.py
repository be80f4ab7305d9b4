"""Every layer kind: the spec's inferred shapes and parameter counts equal what Keras builds.

Parametrised over the registry, so a new kind without a sample here fails
``test_every_kind_has_a_sample``.
"""

import numpy as np
import pytest

from cnnspec.spec import REGISTRY, loads_spec

# kind -> (input shape, layers in the notation). Each exercises the kind's options.
SAMPLES = {
    "conv": (
        [16, 16, 3],
        [
            "conv: 3x3, 8, s=2, p=1, relu",
            "conv: 1x7, 4, p=same",
            "conv: {K: 3, n_K: 4, d: 2}",
            "conv: 3, 8, groups=2, bias=false",
            "conv: 1x1, 4, act=leaky_relu(0.1)",
        ],
    ),
    "convT": (
        [5, 5, 4],
        [
            "convT: 2x2, 8, s=2",
            "convT: 3x3, 4, s=2, p=same, relu",
            "convT: 3x3, 4, s=2, p=1, op=1, bias=false",
            "convT: 1x1, 4, s=2, p=valid",
            "convT: 3x3, 2, s=2, p=same, op=1",
            "convT: {K: 3, n_K: 2, d: 2, p: [[0, 1], [1, 0]], act: relu}",
            "convT: {K: 2, n_K: 2, s: 2, p: 1, act: 'leaky_relu(0.1)'}",
            "convT: 2x2, 2, s=2, p=same, act=leaky_relu(0.3)",
        ],
    ),
    "dwconv": ([16, 16, 4], ["dwconv: 3x3, s=2, p=1, multiplier=2, relu6"]),
    "sepconv": ([16, 16, 4], ["sepconv: 3x3, 8, p=same, swish"]),
    "maxpool": ([15, 15, 3], ["maxpool: 3x3, s=2", "maxpool: 2, p=same"]),
    "avgpool": ([16, 16, 3], ["avgpool: 2x2", "avgpool: 3x3, s=1, p=1"]),
    "l2pool": ([15, 15, 3], ["l2pool: 3x3, s=2, p=same", "l2pool: 2x2"]),
    "gmaxpool": ([8, 8, 5], ["gmaxpool: {keepdims: true}", "gmaxpool"]),
    "gavgpool": ([8, 8, 5], ["gavgpool"]),
    "gl2pool": ([8, 8, 5], ["gl2pool: {keepdims: true}"]),
    "dense": (
        [6],
        ["dense: 7, gelu", "dense: {units: 3, bias: false}", "dense: 2, act=leaky_relu(0)"],
    ),
    "flatten": ([4, 4, 2], ["flatten"]),
    "dropout": ([4, 4, 2], ["dropout: 0.3", "dropout: 0.2, noise_shape=[null, 1, 1, 1]"]),
    "droppath": ([4, 4, 2], ["droppath: 0.1"]),
    "bn": ([4, 4, 6], ["bn: eps=1.001e-5, momentum=0.9"]),
    "layernorm": ([4, 4, 6], ["layernorm"]),
    "layerscale": ([4, 4, 6], ["layerscale: 1e-6", "layerscale"]),
    "lrn": ([4, 4, 6], ["lrn: 5, alpha=1.0e-4, beta=0.75, k=2"]),
    "act": ([4, 4, 2], ["act: leaky_relu", "act: hard_swish", "act: elu", "act: leaky_relu(0.1)"]),
    "zeropad": ([4, 4, 2], ["zeropad: 2", "zeropad: [[0, 1], [0, 1]]"]),
    "crop": ([8, 8, 2], ["crop: 1", "crop: [[0, 1], [2, 0]]"]),
    "upsample": (
        [4, 4, 2],
        ["upsample: 2", "upsample: 2x3, bilinear", "upsample: {interpolation: bicubic}"],
    ),
    "resize": (
        [12, 10, 2],
        [
            "{conv: '3x3, 4, s=2, p=same', name: half}",
            "conv: 3x3, 4, s=2, p=same",
            "resize: {like: half}",
            "resize: 7x9, nearest",
            "resize: {size: 12, interpolation: bicubic}",
        ],
    ),
    "rescale": (
        [4, 4, 2],
        ["rescale: 0.5, 1.0", "rescale: [0.5, 2]", "rescale: {scale: 2, offset: [1, -1]}"],
    ),
    "normalize": (
        [4, 4, 3],
        [
            "normalize: {mean: [0.485, 0.456, 0.406], variance: [0.05, 0.05, 0.05]}",
            "normalize",
            "normalize: {mean: 0.5, variance: [1, 2, 3], constants: true}",
        ],
    ),
    "reshape": ([4, 4, 2], ["reshape: [16, 2]", "reshape: [-1]"]),
    "permute": ([4, 3, 2], ["permute: [2, 1, 3]", "permute: [3, 1, 2]"]),
    "shuffle": ([4, 4, 6], ["shuffle: 3", "shuffle: 2"]),
    "add": ([4, 4, 2], ["{conv: '1x1, 2', name: a}", "conv: 1x1, 2", "add: {from: [a, -1]}"]),
    "multiply": (
        [4, 4, 8],
        [
            "{conv: '1x1, 8', name: x}",
            "gavgpool: {keepdims: true}",
            "conv: 1x1, 8, sigmoid",
            "multiply: {from: [x, -1]}",
        ],
    ),
    "concat": (
        [4, 4, 2],
        [
            "{conv: '1x1, 3', name: a}",
            "{conv: '3x3, 5, p=same', from: input}",
            "concat: {from: [a, -1]}",
        ],
    ),
    "residual": (
        [8, 8, 4],
        [
            "residual: {body: ['conv: 3x3, 8, s=2, p=1', bn, 'act: relu', 'conv: 3x3, 8, p=1', bn]}",
            'residual: ["conv: 3x3, 8, p=same"]',
        ],
    ),
    "inception": (
        [8, 8, 16],
        [
            "inception: 8, 4, 8, 2, 4, 4",
            "inception: {n1x1: 0, n3x3red: 0, n3x3: 4, n5x5red: 2, n5x5: 2, pool_proj: 2, bn: true}",
        ],
    ),
    "parallel": (
        [8, 8, 4],
        ["parallel: {branches: [['conv: 3x3, 4, p=same'], []], merge: add, act: relu}"],
    ),
    "block": ([8, 8, 4], ["block: ['conv: 3x3, 4, p=same', bn]"]),
}

RANK_SAMPLES = [  # 1D and 3D inputs
    (
        [32, 3],
        [
            "conv: 5, 8, s=2, p=2",
            "maxpool: 2",
            "sepconv: 3, 8",
            "dwconv: 3",
            "l2pool: 2",
            "convT: 4, 3, s=2, p=1, op=1",
            "shuffle: 3",
            "gavgpool",
            "dense: 4",
        ],
    ),
    (
        [8, 8, 8, 2],
        [
            "conv: 3x3x3, 4, p=1",
            "avgpool: 2",
            "conv: 1x2x2, 4",
            "upsample: 2",
            "convT: 2x2x2, 4, s=2",
            "convT: 3, 2, s=2, p=same, op=1",
            "shuffle: 2",
            "permute: [4, 1, 2, 3]",
            "gmaxpool",
        ],
    ),
]


def _spec(input_shape, layers):
    items = "\n".join(f"  - {item}" for item in layers)
    return loads_spec(f"name: t\ninput: {input_shape}\npreprocess: none\nlayers:\n{items}\n")


def _check_against_keras(spec):
    from cnnspec.build import build_model

    model = build_model(spec)
    for node in spec.graph.nodes.values():
        if node.spec is None:
            continue
        layer = model.get_layer(node.name)
        # A layer that ends in extra built-in layers (convT's crop of an explicit p, then its
        # activation) outputs through the last of them.
        names = [lyr.name for lyr in model.layers]
        last = next(n for n in (f"{node.name}_act", f"{node.name}_crop", node.name) if n in names)
        assert tuple(model.get_layer(last).output.shape[1:]) == node.shape, node.name
        keras_params = layer.count_params()
        pad = f"{node.name}_pad"
        if pad in [lyr.name for lyr in model.layers]:
            keras_params += model.get_layer(pad).count_params()
        assert keras_params == node.params, node.name
        assert len(layer.non_trainable_weights) == 0 or node.non_trainable == sum(
            int(np.prod(w.shape)) for w in layer.non_trainable_weights
        )
    assert model.count_params() == spec.graph.total_params
    return model


def test_every_kind_has_a_sample():
    assert set(SAMPLES) == set(REGISTRY)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_kind_shapes_and_params_match_keras(kind):
    input_shape, layers = SAMPLES[kind]
    spec = _spec(input_shape, layers)
    assert any(n.kind == kind or n.block for n in spec.graph.nodes.values())
    model = _check_against_keras(spec)
    x = np.random.default_rng(0).uniform(0, 1, (2, *input_shape)).astype("float32")
    y = model.predict(x, verbose=0)
    assert np.isfinite(y).all()


@pytest.mark.parametrize("input_shape,layers", RANK_SAMPLES, ids=["1d", "3d"])
def test_other_ranks_match_keras(input_shape, layers):
    _check_against_keras(_spec(input_shape, layers))


def test_l2pool_computes_the_l2_norm():
    spec = _spec([4, 4, 1], ["l2pool: 2x2"])
    from cnnspec.build import build_model

    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    y = build_model(spec).predict(x, verbose=0)
    expected = np.sqrt(
        np.array([[0 + 1 + 16 + 25, 4 + 9 + 36 + 49], [64 + 81 + 144 + 169, 100 + 121 + 196 + 225]])
    )
    np.testing.assert_allclose(y[0, :, :, 0], expected, rtol=1e-5)


def test_lrn_matches_its_formula():
    spec = _spec([1, 1, 4], ["lrn: 3, alpha=0.5, beta=1.0, k=1"])
    from cnnspec.build import build_model

    a = np.array([1.0, 2.0, 3.0, 4.0], dtype="float32")
    y = build_model(spec).predict(a.reshape(1, 1, 1, 4), verbose=0).ravel()
    sums = [1 + 4, 1 + 4 + 9, 4 + 9 + 16, 9 + 16]
    np.testing.assert_allclose(y, a / (1 + 0.5 * np.array(sums)), rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_summary_notation_shows_every_setting(kind, tmp_path, capsys, monkeypatch):
    # Regression: the table showed 'noise_shape=' (rich took [null, 1, 1, 1] for a style tag)
    # and nothing for 'layerscale' (its init was the default, so left out).
    import re

    from cnnspec.cli import main
    from cnnspec.spec.graph import notation

    input_shape, layers = SAMPLES[kind]
    items = "\n".join(f"  - {item}" for item in layers)
    path = tmp_path / "kind.yaml"
    path.write_text(f"name: t\ninput: {input_shape}\npreprocess: none\nlayers:\n{items}\n")
    monkeypatch.setenv("COLUMNS", "400")  # one line a row
    assert main(["summary", str(path)]) == 0
    table = capsys.readouterr().out
    assert not re.search(r"\b\w+=(?=[,\s│]|$)", table), table
    spec = _spec(input_shape, layers)
    for node in spec.graph.nodes.values():
        if node.spec is None:
            continue
        text = notation(spec.graph, node)
        row = next(line for line in table.splitlines() if line.startswith(f"│ {node.name} "))
        assert f"│ {text} " in row, (text, row)  # shown as it is, never eaten as markup
        settings = node.spec.model_dump(exclude_defaults=True, exclude={"name", "from_", "src"})
        settings.pop("kind", None)
        if settings or (node.spec.positional and node.kind != "concat"):
            assert text, f"{node.name}: {settings}"
