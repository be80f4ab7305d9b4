"""Class scores and their gradients, for the gradient methods (Keras models only).

Grad-CAM and saliency differentiate the class *score* (the logit before a final softmax), as
their papers do: a saturated softmax has near-zero gradients at ~100 % confidence. Integrated
gradients differentiates the probability, so its completeness is stated in probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def logit_probe(model, taps: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """A model giving ``[*tapped layer outputs, pre-softmax tensor]`` and the scores function.

    When the output layer is a softmax (a dense or conv layer with softmax, or a softmax
    activation layer) the scores are its logits; otherwise the model's output itself.
    """
    import keras

    last = model.layers[-1]
    act = getattr(last, "activation", None)
    is_softmax = getattr(act, "__name__", "") == "softmax"
    if is_softmax and isinstance(last, keras.layers.Dense):

        def head(pre):
            return keras.ops.matmul(pre, last.kernel) + (last.bias if last.use_bias else 0.0)

        pre = last.input
    elif is_softmax and isinstance(
        last, keras.layers.Conv1D | keras.layers.Conv2D | keras.layers.Conv3D
    ):

        def head(pre):  # a per-position softmax (segmentation): the conv's own logits
            out = last.convolution_op(pre, last.kernel)
            return out + last.bias if last.use_bias else out

        pre = last.input
    elif is_softmax and isinstance(last, keras.layers.Activation):

        def head(pre):
            return pre

        pre = last.input
    else:

        def head(pre):
            return pre

        pre = model.outputs[0]
    outputs = [outer_output(model.get_layer(name)) for name in taps] + [pre]
    return keras.Model(model.inputs[0], outputs), head


def outer_output(layer) -> Any:
    """A layer's output in the graph that calls it. A nested model's ``.output`` is the one
    inside its own graph (a backbone's: tapping it built a model with two inputs named
    'input'); its node in the calling graph gives the tensor that graph sees."""
    import keras

    if isinstance(layer, keras.Model) and layer._inbound_nodes:
        outs = layer._inbound_nodes[0].output_tensors
        return outs[0] if len(outs) == 1 else outs
    return layer.output


def cached_probe(target, taps: tuple[str, ...] = ()):
    """:func:`logit_probe`, built once per model and taps; its scores are one per class (a
    segmentation map's averaged over its positions, ``Explainable.scores``)."""
    key = ("probe", taps)
    if key not in target.cache:
        probe, head = logit_probe(target.model, taps)
        target.cache[key] = probe, (lambda pre: target.scores(head(pre)))
    return target.cache[key]


def input_gradients(target, x: np.ndarray, cls: int, *, logits: bool) -> np.ndarray:
    """d score / d input for a float32 batch (chunked), ``logits`` or probabilities."""
    import tensorflow as tf

    if logits:
        probe, head = cached_probe(target)
    out = []
    for i in range(0, len(x), target.chunk()):
        xb = tf.convert_to_tensor(x[i : i + target.chunk()], tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(xb)
            if logits:
                pre = probe(xb, training=False)
                score = head(pre[-1] if isinstance(pre, (list, tuple)) else pre)[:, cls]
            else:
                score = target.scores(target.model(xb, training=False))[:, cls]
        out.append(tape.gradient(score, xb).numpy())
    return np.concatenate(out)
