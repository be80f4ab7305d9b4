"""Integrated gradients (Sundararajan et al. 2017) with its completeness check.

``attr = (x - x0) * mean_k grad f((x0 + a_k (x - x0)))`` over midpoints ``a_k`` of ``steps``
intervals, ``f`` the explained class's probability and ``x0`` a constant baseline (black by
default). Completeness says the attributions sum to ``f(x) - f(x0)``; the gap is reported (it
shrinks as ``steps`` grows). The map sums the attributions over channels.
"""

from __future__ import annotations

import numpy as np

from .registry import Attribution, Method, Options, register
from .scores import input_gradients
from .source import Explainable


def integrated_gradients(
    target: Explainable, x: np.ndarray, cls: int, opts: Options
) -> Attribution:
    """The integrated-gradients map of one input for class ``cls``."""
    x0 = np.full_like(x, opts.baseline)
    alphas = (np.arange(opts.steps, dtype=np.float32) + 0.5) / opts.steps
    path = x0[None] + alphas.reshape((-1,) + (1,) * x.ndim) * (x - x0)[None]
    grads = input_gradients(target, path, cls, logits=False)
    attr = (x - x0) * grads.mean(axis=0)
    p, p0 = target.forward(np.stack([x, x0]))[:, cls]
    delta = float(p - p0)
    total = float(attr.sum())
    error = abs(total - delta)
    return Attribution(
        attr.sum(-1),
        {
            "steps": opts.steps,
            "baseline": opts.baseline,
            "attribution_sum": total,
            "f_x_minus_f_baseline": delta,
            "completeness_error": error,
            "completeness_relative": error / abs(delta) if delta else None,
        },
    )


register(
    Method(
        "integrated_gradients",
        integrated_gradients,
        True,
        "integrated gradients from a constant baseline, with the completeness error",
    )
)
