"""Checks that a map is honest.

- **Sanity** (Adebayo et al. 2018, cascading randomisation): re-draw the weights of the top
  ``layers`` weighted layers and explain again; the Spearman rank correlation between the trained
  and the randomised map should be low. A map that survives randomisation (correlation >=
  :data:`SURVIVES`) shows the input, not what the network learned, and is flagged.
- **Deletion curve** (Petsiuk et al. 2018): delete the most important positions first (set to a
  fill value), 5 % at a time, and watch the explained class's probability; a faithful map makes it
  fall fast (a small area under the curve). The same curve for a random order is the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import RunError
from .source import Explainable

SURVIVES = 0.5
DELETION_STEPS = 20
DEFAULT_RANDOMISED = 2


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties averaged); 0.0 when either map is flat."""
    from scipy.stats import rankdata

    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def weighted_layers(model) -> list:
    """Layers with trainable weights, input side first."""
    return [layer for layer in model.layers if layer.trainable_weights]


def randomised(target: Explainable, layers: int = DEFAULT_RANDOMISED, seed: int = 0):
    """A copy of the target whose top ``layers`` weighted layers are re-drawn at random.

    Each tensor is re-drawn from a normal with the trained tensor's mean and std (a constant
    tensor, such as a zero bias, is kept), so activations stay on the trained scale.
    Returns ``(copy, names of the randomised layers)``.
    """
    import keras

    if not target.has_gradients:
        raise RunError(f"{target.path}: --sanity needs the Keras model, received a {target.format}")
    cands = weighted_layers(target.model)
    if not 1 <= layers <= len(cands):
        raise RunError(
            f"--sanity-layers must be in [1, {len(cands)}] (weighted layers), received {layers}"
        )
    clone = keras.models.clone_model(target.model)
    clone.set_weights(target.model.get_weights())
    rng = np.random.default_rng(seed)
    top = weighted_layers(clone)[-layers:]
    for layer in top:
        for w in layer.trainable_weights:
            value = np.asarray(w)
            if value.std() > 0:
                w.assign(rng.normal(value.mean(), value.std(), value.shape).astype(value.dtype))
    return replace(target, model=clone, cache={}), [layer.name for layer in top]


@dataclass(frozen=True)
class Deletion:
    """A deletion curve: probability after deleting each fraction, by the map and at random."""

    fractions: list[float]
    probabilities: list[float]
    random_probabilities: list[float]

    @property
    def area(self) -> float:
        return float(np.trapezoid(self.probabilities, self.fractions))

    @property
    def random_area(self) -> float:
        return float(np.trapezoid(self.random_probabilities, self.fractions))

    def to_dict(self) -> dict:
        return {
            "area": self.area,
            "random_area": self.random_area,
            "fractions": self.fractions,
            "probabilities": self.probabilities,
            "random_probabilities": self.random_probabilities,
        }


def deletion_curve(
    target: Explainable, x: np.ndarray, m: np.ndarray, cls: int, fill: float | None = None
) -> Deletion:
    """Delete positions in the map's order (largest first) and at random; one batched forward."""
    fill = float(x.mean()) if fill is None else float(fill)
    n = m.size
    orders = [np.argsort(-m.ravel(), kind="stable"), np.random.default_rng(0).permutation(n)]
    fractions = np.linspace(0.0, 1.0, DELETION_STEPS + 1)
    batch = []
    for order in orders:
        for f in fractions:
            copy = x.reshape(n, -1).copy()
            copy[order[: round(f * n)]] = fill
            batch.append(copy.reshape(x.shape))
    probs = target.forward(np.stack(batch))[:, cls]
    k = len(fractions)
    return Deletion(
        [float(f) for f in fractions],
        [float(p) for p in probs[:k]],
        [float(p) for p in probs[k:]],
    )
