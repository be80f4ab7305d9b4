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
