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
