"""keras.applications models as init:/import sources, built once per test session (issue 17).

Each is built with weights=None at a small input, logits out (a 1000-way softmax of random
weights is ~1e-3 everywhere and would hide a difference), batch-norm statistics either random or
measured on fixed pixels (``calibrate_batch_norms``: only then do the outputs depend on the
input), and saved as .keras in a session temp folder. Shared read-only by
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
def saved_application(app: str, size: int, calibrated: bool = False):
    """``(model, path)``: keras.applications ``app`` as described above; batch-norm statistics
    measured (``calibrated``) or drawn at random (N(0, 0.1) means, U(0.5, 1.5) variances: the
    outputs hardly depend on the input, tests/test_init.py's absolute tolerances rely on it)."""
    import keras

    keras.utils.set_random_seed(0)
    kwargs = {"include_preprocessing": False} if app.startswith("MobileNetV3") else {}
    model = getattr(keras.applications, app)(
        weights=None, input_shape=(size, size, 3), classifier_activation=None, **kwargs
    )
    if calibrated:
        calibrate_batch_norms(model, pixels(size, seed=7, batch=8, high=pixel_range(app)))
    else:
        rng = np.random.default_rng(0)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                c = layer.moving_mean.shape[0]
                layer.moving_mean.assign(rng.normal(0, 0.1, c).astype("float32"))
                layer.moving_variance.assign(rng.uniform(0.5, 1.5, c).astype("float32"))
    path = _folder() / f"{app}_{size}{'_calibrated' if calibrated else ''}.keras"
    model.save(path)
    return model, path


#: Applications given pixels in [0, 255]: those whose Keras model scales its own input (Rescaling(1/255),
#: ImageNet Normalization), and VGG (no batch norm: its random layers shrink a [0, 1] input's
#: effect on fc2 to 8e-5). The others are given [0, 1], as tests/test_init.py gives them.
OWN_PREPROCESSING = ("EfficientNet", "ConvNeXt", "VGG")


def pixel_range(app: str) -> float:
    """The largest pixel value the tests give ``app``."""
    return 255.0 if app.startswith(OWN_PREPROCESSING) else 1.0


def pixels(size: int, seed: int = 1, batch: int = 2, high: float = 1.0) -> np.ndarray:
    """Fixed images with pixel values in [0, high]."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, high, (batch, size, size, 3)).astype("float32")


def calibrate_batch_norms(model, images: np.ndarray) -> None:
    """Batch-norm statistics that carry the input through to the output.

    Random statistics drawn regardless of the activations (mean ~ N(0, 0.1), variance ~
    U(0.5, 1.5), as before) left a deep random network nearly constant: EfficientNetB0's logits
    moved by 8e-8 when its input was doubled, so comparing outputs proved nothing. Here each
    layer's statistics are those of its own input on ``images`` (one training-mode
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
    model(images, training=True)
    for layer, momentum in zip(norms, saved[0], strict=True):
        layer.momentum = momentum
        # A near-constant channel (dead ReLU, 8 samples at 1x1) is not blown up to unit scale:
        # that would amplify float rounding more than any trained network does.
        var = keras.ops.convert_to_numpy(layer.moving_variance)
        layer.moving_variance.assign(var + 0.1 * var.mean())
    for layer, rate in zip(drops, saved[1], strict=True):
        layer.rate = rate
