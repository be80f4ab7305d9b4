"""Grad-CAM (Selvaraju et al. 2017): a spatial layer's maps weighted by the class score's gradient.

``cam = relu(sum_c mean(d score / d A_c) * A_c)`` at the layer's resolution, resized to the
input's (linear interpolation, any number of spatial axes). The layer defaults to the last
spatial one, named as in the spec (``--layer`` takes a layer or a block's name).
"""

from __future__ import annotations

import numpy as np

from .registry import Attribution, Method, Options, register
from .scores import cached_probe
from .source import Explainable, layer_for_gradcam


def gradcam(target: Explainable, x: np.ndarray, cls: int, opts: Options) -> Attribution:
    """The Grad-CAM map of one input for class ``cls``."""
    import tensorflow as tf

    layer = layer_for_gradcam(target, opts.layer)
    probe, head = cached_probe(target, (layer,))
    with tf.GradientTape() as tape:
        fmap, pre = probe(tf.convert_to_tensor(x[None], tf.float32), training=False)
        score = head(pre)[:, cls]
    grads = tape.gradient(score, fmap)
    fmap, grads = np.asarray(fmap)[0], np.asarray(grads)[0]
    weights = grads.mean(axis=tuple(range(grads.ndim - 1)))
    cam = np.maximum((fmap * weights).sum(-1), 0.0)
    return Attribution(
        resize(cam, x.shape[:-1]),
        {"layer": layer, "layer_shape": list(fmap.shape), "score": float(score[0])},
    )


def resize(m: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear resize of a map to ``shape`` (pixel-area aligned, edges held)."""
    if m.shape == tuple(shape):
        return m.astype(np.float32)
    from scipy.ndimage import zoom

    factors = [o / i for o, i in zip(shape, m.shape, strict=True)]
    out = zoom(m.astype(np.float64), factors, order=1, mode="nearest", grid_mode=True)
    return out.astype(np.float32)


register(Method("gradcam", gradcam, True, "Grad-CAM on a spatial layer (default: the last)"))
