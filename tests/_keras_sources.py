"""keras.applications models as init:/import sources, built once per test session (issue 17).

Each is built with weights=None at a small input, logits out (a 1000-way softmax of random
weights is ~1e-3 everywhere and would hide a difference), batch-norm statistics measured on fixed
pixels (``calibrate_batch_norms``: the outputs depend on the input, and a wrong pairing shows),
and saved as .keras in a session temp folder. Shared read-only by
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
    calibrate_batch_norms(model, size)
    path = _folder() / f"{app}_{size}.keras"
    model.save(path)
    return model, path


def pixels(size: int, seed: int = 1, batch: int = 2) -> np.ndarray:
    """Fixed images with pixel values in [0, 255] (what keras.applications take)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")


def calibrate_batch_norms(model, size: int) -> None:
    """Batch-norm statistics that carry the input through to the output.

    Random statistics drawn regardless of the activations (mean ~ N(0, 0.1), variance ~
    U(0.5, 1.5), as before) left a deep random network nearly constant: EfficientNetB0's logits
    moved by 8e-8 when its input was doubled, so comparing outputs proved nothing. Here each
    layer's statistics are those of its own input on a fixed batch of pixels (one training-mode
    pass, momentum 0, dropout off): every layer then normalises its input as a trained network
    does, and its per-channel statistics still differ from every other layer's (a wrong pairing
    shows).
    """
    import keras

    norms = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    if not norms:
        return
    drops = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Dropout)]
    saved = [lyr.momentum for lyr in norms], [lyr.rate for lyr in drops]
    for layer in norms:
        layer.momentum = 0.0
    for layer in drops:
        layer.rate = 0.0
    model(pixels(size, seed=7, batch=8), training=True)
    for layer, momentum in zip(norms, saved[0], strict=True):
        layer.momentum = momentum
    for layer, rate in zip(drops, saved[1], strict=True):
        layer.rate = rate
