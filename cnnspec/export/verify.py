"""Verifying an export: run it in its own runtime on sample inputs, compare with Keras."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from .base import ExportFormat, first_line

if TYPE_CHECKING:
    import numpy as np

N_SAMPLES = 16


def sample_inputs(input_shape: list[int], n: int = N_SAMPLES, seed: int = 0) -> np.ndarray:
    """Deterministic inputs in [0, 255]: noise, flat images and smooth gradients.

    A model of another rank (1D signals, 3D volumes) gets noise and the two flat inputs.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 255.0, size=(n, *input_shape)).astype(np.float32)
    if n >= 4:
        x[0] = 0.0
        x[1] = 255.0
    if n >= 4 and len(input_shape) == 3:
        h, w, _ = input_shape
        x[2] = np.linspace(0.0, 255.0, w, dtype=np.float32)[None, :, None]
        x[3] = np.linspace(0.0, 255.0, h, dtype=np.float32)[:, None, None]
    return x


def verify_export(
    model, path: Path, fmt: ExportFormat, input_shape: list[int], n: int
) -> tuple[float, float]:
    """Run the export in its own runtime on sample inputs and compare with the Keras model.

    Returns the max absolute difference of the probabilities and the share of samples whose
    most probable class agrees. Dense outputs (a segmentation map, N x H x W x C) are compared
    whole: the max difference over every pixel's probabilities, the argmax agreement over
    every pixel.
    """
    import numpy as np

    x = sample_inputs(list(input_shape), n)
    expected = np.asarray(model(x, training=False))
    try:
        got = fmt.runtime(path).predict(x)
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - any runtime failure means the export is unusable
        raise RunError(
            f"export verification failed: the {fmt.name} runtime cannot run the export: "
            f"{first_line(exc)}"
        ) from None
    if got.shape != expected.shape:
        raise RunError(
            f"export verification failed: {fmt.name} output shape {got.shape}, "
            f"Keras {expected.shape}"
        )
    diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
    agreement = float((got.argmax(axis=-1) == expected.argmax(axis=-1)).mean())
    return diff, agreement
