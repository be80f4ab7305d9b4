"""The language's newer kinds compute what they claim, and saved models reload in safe mode.

(Shapes and parameter counts of every kind against Keras are in test_layer_kinds.py.)
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.spec import loads_spec


def _spec(input_shape, layers, preprocess="none"):
    items = "\n".join(f"  - {item}" for item in layers)
    return loads_spec(
        f"name: t\ninput: {list(input_shape)}\npreprocess: {preprocess}\nlayers:\n{items}\n"
    )


def _model(input_shape, layers):
    from cnnspec.build import build_model

    return build_model(_spec(input_shape, layers))


def _reloaded(model, tmp_path):
    from cnnspec.modelio import load_keras_model

    path = tmp_path / "m.keras"
    model.save(path)
    return load_keras_model(path)


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=(2, *shape)).astype("float32")


def test_normalize_subtracts_the_mean_and_divides_by_the_deviation(tmp_path):
    mean, var = [1.0, -2.0, 0.5], [4.0, 0.25, 1.0]
    model = _model([3, 3, 3], [f"normalize: {{mean: {mean}, variance: {var}}}"])
    x = _x([3, 3, 3])
    expected = (x - np.array(mean)) / np.sqrt(np.array(var))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # The statistics are weights: they survive a save and a safe-mode reload.
    np.testing.assert_allclose(
        _reloaded(model, tmp_path).predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6
    )


def test_normalize_needs_one_value_per_channel():
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError, match=r"one mean per channel \(3\), received 2 values"):
        _spec([4, 4, 3], ["normalize: {mean: [1, 2], variance: 1}"])
    with pytest.raises(SpecError, match="variances must be positive"):
        _spec([4, 4, 3], ["normalize: {mean: 0, variance: [1, 0, 1]}"])


@pytest.mark.parametrize(
    "layer,n,expected",
    [  # (n - 1)·s - 2p + d(K - 1) + 1 + op
        ("convT: 2, 1, s=2", 5, 10),
        ("convT: 3, 1, s=2, p=1", 5, 9),
        ("convT: 3, 1, s=2, p=1, op=1", 5, 10),
        ("convT: 4, 1, s=2, p=1", 5, 10),
        ("convT: 3, 1, s=1, d=2", 5, 9),
        ("convT: 3, 1, s=3, p=same", 5, 15),
        ("convT: 1, 1, s=2, p=valid", 5, 10),
    ],
)
def test_convT_output_size_rule(layer, n, expected):
    assert _spec([n, 2], [layer]).graph.nodes["convT_1"].shape == (expected, 1)


def test_convT_scatters_each_input_through_the_kernel_then_crops_p():
    # 1D, one channel: out[i*s + k] += x[i] * w[k], then p cropped from each side.
    model = _model([4, 1], ["convT: 3, 1, s=2, p=1, op=1, bias=false"])
    w = np.array([1.0, 10.0, 100.0], dtype="float32")
    model.get_layer("convT_1").set_weights([w.reshape(3, 1, 1)])
    x = np.array([1.0, 2.0, 3.0, 4.0], dtype="float32")
    full = np.zeros((4 - 1) * 2 + 3 + 1)
    for i, v in enumerate(x):
        full[i * 2 : i * 2 + 3] += v * w
    y = model.predict(x.reshape(1, 4, 1), verbose=0).ravel()
    np.testing.assert_allclose(y, full[1:-1], rtol=1e-6)


@pytest.mark.parametrize(
    "layer,message",
    [
        ("convT: 3, 4, s=2, op=2", "output padding must be smaller than the stride"),
        ("permute: [1, 1, 3]", r"permute needs an order of the axes 1..3 of its 4x4x6 input"),
        ("shuffle: 4", r"shuffle needs the channels \(6\) to be a multiple of its groups"),
        ("dropout: 0.2, noise_shape=[null, 1, 1]", "noise_shape has 3 axes but the input has 4"),
    ],
)
def test_new_kinds_refuse_bad_values_with_a_located_message(layer, message):
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError, match=message) as err:
        _spec([4, 4, 6], [layer])
    assert str(err.value).startswith("<string>:5:5: layers[0]")


@pytest.mark.parametrize(
    "layer,message,hint",
    [
        (  # validated, then training failed at any other batch size
            "dropout: 0.5, noise_shape=[2, 1, 1, 6]",
            "the batch axis (the first) of noise_shape must be null, received noise_shape=[2, 1, 1, 6]",
            "write noise_shape=[null, 1, 1, 6]: batches differ in size.",
        ),
        (  # said "reduce K or s": for a transposed conv that shrinks it more
            "convT: 3, 4, p=4",
            "p=4 crops away the whole output (6 wide before the crop) of a 4x4x6 input",
            "use a smaller p (at most 2 a side).",
        ),
        (  # said "downsample in another layer"
            "convT: 3, 4, s=2, d=2",
            "a stride above 1 cannot be combined with a dilation above 1, received s=2, d=2",
            "use s=1 with dilation, and upsample in another layer.",
        ),
        (  # validated: x / (0 + 0·sum)^beta divides by zero at run time
            "lrn: 5, k=0, alpha=0",
            "lrn's k must be at least 1e-07",
            "use k=2 (AlexNet) or k=1.",
        ),
        ("lrn: 5, alpha=-1", "lrn's alpha must be 0 or more, received alpha=-1", "use alpha=1e-4"),
        (  # validated: Keras silently divides by epsilon instead (0 in float32)
            "normalize: {variance: 1e-320}",
            "normalize divides by sqrt(variance), which must be at least 1e-07",
            "use variances of at least 1e-14",
        ),
    ],
)
def test_values_that_fail_at_run_time_are_refused_with_a_hint_that_points_the_right_way(
    layer, message, hint
):
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError) as err:
        _spec([4, 4, 6], [layer])
    text = str(err.value)
    assert text.startswith("<string>:5:5: layers[0]") and "\n" not in text, text
    where, _, rest = text.partition(": ")
    assert message in rest and f"Hint: {hint}" in rest, text


def test_permute_and_shuffle_move_values_as_numpy_does():
    model = _model([2, 3, 6], ["{permute: [2, 1, 3], name: p}", "shuffle: 3"])
    x = _x([2, 3, 6])
    permuted = x.transpose(0, 2, 1, 3)
    shuffled = permuted.reshape(2, 3, 2, 3, 2).swapaxes(-1, -2).reshape(2, 3, 2, 6)
    np.testing.assert_array_equal(model.predict(x, verbose=0), shuffled)
    # ShuffleNet's channel order for g=3 and 6 channels: 0, 2, 4, 1, 3, 5.
    ch = np.arange(6, dtype="float32").reshape(1, 1, 1, 6)
    np.testing.assert_array_equal(
        _model([1, 1, 6], ["shuffle: 3"]).predict(ch, verbose=0).ravel(), [0, 2, 4, 1, 3, 5]
    )


def test_droppath_drops_whole_samples_in_training_only():
    model = _model([4, 4, 3], ["droppath: 0.5"])
    x = np.abs(_x([4, 4, 3])).repeat(200, axis=0) + 0.1
    np.testing.assert_array_equal(model(x, training=False), x)
    y = np.asarray(model(x, training=True))
    dropped = (y == 0).all(axis=(1, 2, 3))
    kept = np.isclose(y, 2 * x).all(axis=(1, 2, 3))
    assert (dropped | kept).all()
    assert 0.35 < dropped.mean() < 0.65


def test_dropout_noise_shape_drops_whole_feature_maps():
    model = _model([4, 4, 3], ["dropout: 0.5, noise_shape=[null, 1, 1, 3]"])
    x = np.ones((100, 4, 4, 3), dtype="float32")
    y = np.asarray(model(x, training=True))
    # One mask value per sample and channel: each channel map is all 0 or all 2.
    per_map = y.reshape(100, 16, 3)
    assert (per_map.min(axis=1) == per_map.max(axis=1)).all()
    assert 0.3 < (per_map[:, 0] == 0).mean() < 0.7


def test_layerscale_starts_at_its_initial_value_and_reloads_safely(tmp_path):
    layers = [
        "conv: 3x3, 6, p=same",
        "layerscale: 0.5",
        "droppath: 0.2",
        "shuffle: 3",
        "convT: 2x2, 4, s=2",
        "normalize: {mean: 1, variance: 4}",
        "dropout: 0.1, noise_shape=[null, 1, 1, 1]",
    ]
    model = _model([4, 4, 3], layers)
    assert model.get_layer("layerscale_1").get_weights()[0].tolist() == [0.5] * 6
    x = _x([4, 4, 3])
    np.testing.assert_allclose(
        _reloaded(model, tmp_path).predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6
    )


# --- bugs of issue 10 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "axis,shape",
    [(1, (8, 8, 2)), (2, (4, 16, 2)), (3, (4, 8, 4)), (-1, (4, 8, 4)), (-3, (8, 8, 2))],
)
def test_concat_axis_means_the_same_to_the_checker_and_to_keras(axis, shape):
    from cnnspec.build import build_model

    spec = _spec(
        [4, 8, 2],
        ["{conv: '1x1, 2', name: a}", f"concat: {{from: [a, input], axis: {axis}}}"],
    )
    assert spec.graph.nodes["concat_1"].shape == shape
    assert tuple(build_model(spec).output.shape[1:]) == shape


def test_concat_refuses_the_batch_axis_and_names_the_axis_written():
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError, match="concat cannot join along the batch axis, received axis=0"):
        _spec([4, 8, 2], ["{conv: '1x1, 2', name: a}", "concat: {from: [a, input], axis: 0}"])
    with pytest.raises(SpecError, match="concat axis is out of range .* received axis=4"):
        _spec([4, 8, 2], ["{conv: '1x1, 2', name: a}", "concat: {from: [a, input], axis: 4}"])
    with pytest.raises(SpecError, match="concat along axis 1 needs the other dimensions to match"):
        _spec([4, 8, 2], ["{conv: '1x1, 3', name: a}", "concat: {from: [a, input], axis: 1}"])


@pytest.mark.parametrize(
    "body", ["sepconv: 3x3, 64, p=same, bias=false", "dwconv: 3x3, s=2, p=1, bias=false"]
)
def test_projection_bias_follows_a_sepconv_or_dwconv_body(body):
    spec = _spec([8, 8, 128], [f"residual: {{body: ['{body}', 'conv: 1x1, 64, bias=false']}}"])
    # 1x1 conv 128 -> 64 without bias: 8,192 parameters (8,320 with one).
    assert spec.graph.nodes["residual_1_shortcut"].params == 128 * 64
    only = _spec([8, 8, 128], [f"residual: {{body: ['{body.replace('64', '128')}']}}"])
    short = only.graph.nodes.get("residual_1_shortcut")
    assert short is None or short.params == 128 * 128


def test_sepconv_only_body_projection_has_no_bias_in_keras():
    from cnnspec.build import build_model

    spec = _spec([8, 8, 128], ["residual: {body: ['sepconv: 3x3, 64, p=same, bias=false']}"])
    layer = build_model(spec).get_layer("residual_1_shortcut")
    assert layer.count_params() == 8192 and not layer.use_bias


def test_an_explicit_name_is_never_taken_by_an_earlier_auto_name():
    spec = _spec(
        [8, 8, 3],
        ["conv: 3x3, 4, p=same", "conv: 3x3, 4, p=same", "{conv: '1x1, 5', name: conv_1}"],
    )
    assert spec.graph.nodes["conv_1"].spec.n_K == 5
    assert [n for n in spec.graph.nodes if n.startswith("conv")] == ["conv_2", "conv_3", "conv_1"]
    # A name written twice is still refused.
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError, match="the name 'x' is used twice"):
        _spec([8, 8, 3], ["{conv: '1x1, 4', name: x}", "{conv: '1x1, 4', name: x}"])


def test_residual_drop_path_drops_the_body_in_training_only():
    spec = _spec(
        [4, 4, 3], ["residual: {body: ['conv: 3x3, 3, p=same'], drop_path: 0.5, act: null}"]
    )
    assert spec.graph.nodes["residual_1_droppath"].inputs == ["residual_1_conv_1"]
    from cnnspec.build import build_model

    model = build_model(spec)
    x = _x([4, 4, 3]).repeat(100, axis=0)
    body = model.get_layer("residual_1_conv_1")
    branch = np.asarray(body(x))
    np.testing.assert_allclose(model(x, training=False), x + branch, rtol=1e-5, atol=1e-5)
    y = np.asarray(model(x, training=True))
    dropped = np.isclose(y, x, atol=1e-6).all(axis=(1, 2, 3))
    kept = np.isclose(y, x + 2 * branch, rtol=1e-4, atol=1e-5).all(axis=(1, 2, 3))
    assert (dropped | kept).all() and 0.3 < dropped.mean() < 0.7


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "tflite", "savedmodel"])
def test_new_kinds_export_and_match_keras_in_their_runtime(fmt, tmp_path):
    from _model_fixtures import run_cli

    model = _model(
        [8, 8, 3],
        [
            "normalize: {mean: [100, 110, 120], variance: [3000, 3100, 3200]}",
            "normalize: {mean: 0.1, variance: 2, constants: true}",
            "conv: 3x3, 12, p=same, relu",
            "residual: {body: ['conv: 3x3, 12, p=same', 'layerscale: 0.1'], drop_path: 0.1}",
            "shuffle: 3",
            "dropout: 0.2, noise_shape=[null, 1, 1, 1]",
            "permute: [2, 1, 3]",
            "convT: 3x3, 8, s=2, p=1, op=1, relu",
            "convT: 2x2, 4, s=2",
            "{conv: '3x3, 4, s=2, p=same, act=leaky_relu(0.1)', name: half}",
            "upsample: 2, bilinear",
            "resize: {like: half}",
            "resize: 12x10, nearest",
            "act: leaky_relu(0.2)",
            "gavgpool",
            "dense: 3, softmax",
        ],
    )
    path = tmp_path / "m.keras"
    model.save(path)
    # export verifies the file in its own runtime against Keras and exits 1 on a mismatch.
    dest = tmp_path / ("m" if fmt == "savedmodel" else f"m.{fmt}")
    assert run_cli(["export", path, "--format", fmt, "-o", dest]) == 0


@pytest.mark.slow
def test_a_net_of_the_new_kinds_learns_digits(tmp_path):
    import json

    import keras

    from cnnspec.cli import main
    from cnnspec.data import load_data

    spec = tmp_path / "kinds.yaml"
    spec.write_text(
        "name: kinds\ninput: [16, 16, 1]\npreprocess: none\nlayers:\n"
        "  - normalize: {mean: 40, variance: 4000}\n"
        "  - conv: 3x3, 24, p=same, bias=false\n  - bn: momentum=0.9\n  - act: relu\n"
        "  - residual:\n      body: ['conv: 1x1, 24, groups=3, bias=false', 'bn: momentum=0.9',"
        " 'act: relu', 'shuffle: 3', 'dwconv: 3x3, p=same, bias=false', 'bn: momentum=0.9',"
        " 'conv: 1x1, 24, groups=3', 'layerscale: 0.1']\n      shortcut: identity\n"
        "      drop_path: 0.1\n"
        "  - maxpool: 2\n  - convT: 2x2, 16, s=2, relu\n  - conv: 3x3, 32, s=2, p=1, relu\n"
        "  - dropout: 0.1, noise_shape=[null, 1, 1, 32]\n  - permute: [2, 1, 3]\n"
        "  - flatten\n  - dense: 10, softmax\n"
    )
    run = tmp_path / "run"
    args = ["train", spec, "--out", run, "--epochs", "10", "--quiet"]
    args += ["--set", "train.optimizer={adam: {lr: 3.0e-3}}"]
    assert main([str(a) for a in args]) == 0
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    # Accuracy recomputed here from the saved model (safe-mode reload of the custom layers).
    data = load_data("digits", [16, 16, 1])
    xs, ys = zip(*data.split("test").batch(4096).as_numpy_iterator(), strict=True)
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    acc = (model.predict(np.concatenate(xs), verbose=0).argmax(axis=1) == np.concatenate(ys)).mean()
    assert acc > 0.9, acc


# --- bilinear upsampling, resizing to a layer's size, a leaky ReLU slope ---------------------------


def _bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres (tf.image.resize), one sample, HxWxC."""
    h, w = x.shape[:2]

    def axis(n_out, n_in):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, src - lo

    r0, r1, fr = axis(out_h, h)
    c0, c1, fc = axis(out_w, w)
    rows = x[r0] * (1 - fr)[:, None, None] + x[r1] * fr[:, None, None]
    return rows[:, c0] * (1 - fc)[None, :, None] + rows[:, c1] * fc[None, :, None]


def test_bilinear_upsample_and_resize_like_a_layer_interpolate_as_written(tmp_path):
    spec = _spec(
        [6, 4, 2],
        [
            "{conv: '1x1, 2, s=2, bias=false', name: half}",
            "upsample: 2, bilinear",
            "{resize: {like: half}, name: back}",
            "resize: 5x7",
        ],
    )
    shapes = {n: spec.graph.nodes[n].shape for n in ("half", "upsample_1", "back", "resize_1")}
    assert shapes == {
        "half": (3, 2, 2),
        "upsample_1": (6, 4, 2),
        "back": (3, 2, 2),  # the named layer's height and width
        "resize_1": (5, 7, 2),
    }
    from cnnspec.build import build_model

    model = build_model(spec)
    model.get_layer("half").set_weights([np.eye(2, dtype="float32").reshape(1, 1, 2, 2)])
    x = _x([6, 4, 2])
    half = x[0, ::2, ::2]
    up = _bilinear(half, 6, 4)
    expected = _bilinear(_bilinear(up, 3, 2), 5, 7)
    y = _reloaded(model, tmp_path).predict(x, verbose=0)[0]
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_leaky_relu_slope_is_the_one_written(tmp_path):
    """The bare compact form (``dense: 5, leaky_relu(0.1)``) as well as ``act: leaky_relu(0.05)``."""
    model = _model(
        [5],
        ["dense: 5, leaky_relu(0.1), bias=false", "act: leaky_relu(0.05)"],
    )
    model.get_layer("dense_1").set_weights([np.eye(5, dtype="float32")])
    x = np.array([[-2.0, -1.0, 0.0, 1.0, 3.0]], dtype="float32")
    expected = np.where(x > 0, x, x * 0.1 * 0.05)
    np.testing.assert_allclose(
        _reloaded(model, tmp_path).predict(x, verbose=0), expected, rtol=1e-6
    )


@pytest.mark.parametrize(
    "shape,layer,message",
    [
        ([8, 2], "upsample: 2, bilinear", "upsample interpolates (bilinear) images only"),
        ([8, 8, 2], "resize", "resize takes either size (56x56) or like (a layer name)"),
        ([8, 8, 2], "resize: {size: 4, like: input}", "received both"),
        ([8, 8, 2], "resize: {like: later}", "like: 'later' refers to a layer defined later"),
        ([8, 8, 2], "resize: {like: nope}", "unknown layer 'nope' in like:, received like=nope"),
        ([8, 8, 2], "act: leaky_relu(1.5)", "leaky_relu's negative_slope must be a number from 0"),
        ([8, 8, 2], "conv: {K: 1, n_K: 2, act: leaky(0.1)}", "unknown activation"),
    ],
)
def test_resize_and_activation_mistakes_are_located(shape, layer, message):
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError) as err:
        _spec(shape, [layer, "{flatten: null, name: later}"])
    assert message in str(err.value) and str(err.value).startswith("<string>:5:"), str(err.value)
