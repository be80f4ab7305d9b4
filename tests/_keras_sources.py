"""keras.applications models as init:/import sources, built once per test session (issue 17).

Each is built with weights=None at a small input, logits out (a 1000-way softmax of random
weights is ~1e-3 everywhere and would hide a difference), random batch-norm statistics (a wrong
pairing shows in the outputs), and saved as .keras in a session temp folder. Shared read-only by
tests/test_init.py and tests/test_import.py: building ResNet-50 and saving its 100 MB costs
seconds, once.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np


@functools.cache
def _folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="cnnspec-sources-"))


@functools.cache
def saved_application(app: str, size: int):
    """``(model, path)``: keras.applications ``app`` as described above."""
    import keras

    keras.utils.set_random_seed(0)
    kwargs = {"include_preprocessing": False} if app.startswith("MobileNetV3") else {}
    model = getattr(keras.applications, app)(
        weights=None, input_shape=(size, size, 3), classifier_activation=None, **kwargs
    )
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    path = _folder() / f"{app}_{size}.keras"
    model.save(path)
    return model, path
