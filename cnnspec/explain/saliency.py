"""Saliency (Simonyan et al. 2014) and SmoothGrad (Smilkov et al. 2017).

Saliency: ``max_c |d score / d x|``. SmoothGrad: the same, averaged over ``samples`` copies of
the input with Gaussian noise (std ``noise`` times the input's value range), seeded.
"""

from __future__ import annotations

import numpy as np

from .registry import Attribution, Method, Options, register
from .scores import input_gradients
from .source import Explainable


def saliency(target: Explainable, x: np.ndarray, cls: int, opts: Options) -> Attribution:
    """The gradient magnitude of the class score at one input."""
    grads = input_gradients(target, x[None], cls, logits=True)[0]
    return Attribution(np.abs(grads).max(-1))


def smoothgrad(target: Explainable, x: np.ndarray, cls: int, opts: Options) -> Attribution:
    """Saliency averaged over noisy copies of the input."""
    rng = np.random.default_rng(0)
    sigma = opts.noise * max(float(x.max() - x.min()), 1e-6)
    noisy = x[None] + rng.normal(0.0, sigma, (opts.samples, *x.shape)).astype(np.float32)
    grads = input_gradients(target, noisy, cls, logits=True)
    return Attribution(np.abs(grads).max(-1).mean(0), {"samples": opts.samples, "noise_std": sigma})


register(Method("saliency", saliency, True, "gradient magnitude of the class score"))
register(Method("smoothgrad", smoothgrad, True, "saliency averaged over noisy copies"))
