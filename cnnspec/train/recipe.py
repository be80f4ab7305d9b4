"""The `train:` recipe made concrete: Keras optimizers, schedules, losses and metrics.

One small builder per kind, looked up by the kind name (the spec's single-key mapping), so a
new optimizer or schedule is one function and one spec class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..spec.train import TrainSpec

# --- learning-rate schedules (per step; epochs are converted with steps_per_epoch) ---------------


def _constant(p, lr: float, steps: int, epochs: int):
    return lr


def _step(p, lr, steps, epochs):
    import keras

    return keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=p.every * steps, decay_rate=p.factor, staircase=True
    )


def _piecewise(p, lr, steps, epochs):
    import keras

    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [b * steps for b in p.boundaries], [lr * f for f in p.factors]
    )


def _exponential(p, lr, steps, epochs):
    import keras

    return keras.optimizers.schedules.ExponentialDecay(
        lr, decay_steps=max(1, round(p.decay_epochs * steps)), decay_rate=p.decay_rate
    )


def _cosine(p, lr, steps, epochs):
    import keras

    warmup = min(p.warmup_epochs, epochs - 1) * steps
    decay = max(1, epochs * steps - warmup)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=decay, alpha=p.min_factor)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=decay, alpha=p.min_factor, warmup_target=lr, warmup_steps=warmup
    )


def _plateau(p, lr, steps, epochs):
    return lr  # a constant the ReduceLROnPlateau callback lowers (see callbacks())


SCHEDULES: dict[str, Callable[..., Any]] = {
    "constant": _constant,
    "step": _step,
    "piecewise": _piecewise,
    "exponential": _exponential,
    "cosine": _cosine,
    "reduce_on_plateau": _plateau,
}


def learning_rate(recipe: TrainSpec, steps_per_epoch: int):
    """The optimizer's learning rate: a float or a per-step LearningRateSchedule."""
    lr = recipe.optimizer.params.lr
    schedule = recipe.schedule
    return SCHEDULES[schedule.kind](schedule.params, lr, steps_per_epoch, recipe.epochs)


# --- optimizers --------------------------------------------------------------------------------


def _common(p) -> dict[str, Any]:
    return {"weight_decay": p.weight_decay, "clipnorm": p.clipnorm}


def _sgd(p, lr):
    import keras

    return keras.optimizers.SGD(lr, momentum=p.momentum, nesterov=p.nesterov, **_common(p))


def _adam(p, lr):
    import keras

    return keras.optimizers.Adam(
        lr, beta_1=p.beta_1, beta_2=p.beta_2, epsilon=p.epsilon, amsgrad=p.amsgrad, **_common(p)
    )


def _adamw(p, lr):
    import keras

    return keras.optimizers.AdamW(
        lr, beta_1=p.beta_1, beta_2=p.beta_2, epsilon=p.epsilon, amsgrad=p.amsgrad, **_common(p)
    )


def _rmsprop(p, lr):
    import keras

    return keras.optimizers.RMSprop(
        lr, rho=p.rho, momentum=p.momentum, epsilon=p.epsilon, **_common(p)
    )


OPTIMIZERS: dict[str, Callable[..., Any]] = {
    "sgd": _sgd,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
}


def optimizer(recipe: TrainSpec, steps_per_epoch: int):
    """A fresh Keras optimizer for the recipe (its schedule included)."""
    opt = recipe.optimizer
    return OPTIMIZERS[opt.kind](opt.params, learning_rate(recipe, steps_per_epoch))


# --- losses and metrics ----------------------------------------------------------------------------


def _cce(p, reduction):
    import keras

    return keras.losses.CategoricalCrossentropy(
        label_smoothing=p.label_smoothing, reduction=reduction
    )


def _scce(p, reduction):
    import keras

    return keras.losses.SparseCategoricalCrossentropy(reduction=reduction)


def _focal(p, reduction):
    import keras

    return keras.losses.CategoricalFocalCrossentropy(
        alpha=p.alpha, gamma=p.gamma, label_smoothing=p.label_smoothing, reduction=reduction
    )


LOSSES: dict[str, Callable[..., Any]] = {
    "categorical_crossentropy": _cce,
    "sparse_categorical_crossentropy": _scce,
    "categorical_focal_crossentropy": _focal,
}


def loss(recipe: TrainSpec, reduction: str | None = "sum_over_batch_size"):
    """The Keras loss (``reduction=None`` gives per-example losses for custom loops)."""
    return LOSSES[recipe.loss.kind](recipe.loss.params, reduction)


def _accuracy_metric(name: str, one_hot: bool) -> Any:
    import keras

    cls = keras.metrics.CategoricalAccuracy if one_hot else keras.metrics.SparseCategoricalAccuracy
    return cls(name=name)


def _accuracy_hits(name: str) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    def hits(probs, truth):
        return tf.cast(tf.equal(tf.argmax(probs, axis=-1), truth), tf.float32)

    return hits


def _top_k(name: str) -> int:
    return int(name[3:])


def _top_k_metric(name: str, one_hot: bool) -> Any:
    import keras

    cls = (
        keras.metrics.TopKCategoricalAccuracy
        if one_hot
        else keras.metrics.SparseTopKCategoricalAccuracy
    )
    return cls(k=_top_k(name), name=name)


def _top_k_hits(name: str) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    k = _top_k(name)

    def hits(probs, truth):
        return tf.cast(tf.math.in_top_k(truth, tf.cast(probs, tf.float32), k), tf.float32)

    return hits


#: Every metric kind the recipe may name, with its Keras metric (the fit path) and its
#: per-example hits (the multi-worker step and the end-of-run evaluation): one place, so the
#: two training loops log the same metrics under the same names.
METRIC_KINDS: dict[str, tuple[Callable[[str, bool], Any], Callable[[str], Any]]] = {
    "accuracy": (_accuracy_metric, _accuracy_hits),
    "top": (_top_k_metric, _top_k_hits),
}


def _metric_kind(name: str) -> str:
    return "top" if name.startswith("top") else name


def active_metrics(recipe: TrainSpec, num_classes: int) -> tuple[list[str], list[str]]:
    """(the recipe's metrics this data set gives meaning to, the ones left out).

    A topK with k >= the number of classes is 1.0 by construction: it is left out, unless
    early stopping or the plateau schedule monitors it.
    """
    monitored = {m.removeprefix("val_") for m in recipe.monitors().values()}
    kept, skipped = [], []
    for name in recipe.metrics:
        pointless = _metric_kind(name) == "top" and _top_k(name) >= num_classes
        (skipped if pointless and name not in monitored else kept).append(name)
    return kept, skipped


def metrics(recipe: TrainSpec, names: list[str] | None = None) -> list[Any]:
    """Keras metrics named as in the spec (``accuracy``, ``top3``, ...); ``names``: a subset
    (``active_metrics``), default all of the recipe's."""
    one_hot = recipe.loss.one_hot
    return [
        METRIC_KINDS[_metric_kind(n)][0](n, one_hot)
        for n in (recipe.metrics if names is None else names)
    ]


def metric_hits(names: list[str]) -> list[Callable[[Any, Any], Any]]:
    """Graph functions ``(probs, int labels) -> per-example 0/1`` of the metrics ``names``."""
    return [METRIC_KINDS[_metric_kind(n)][1](n) for n in names]


def steps_per_epoch(recipe: TrainSpec, n_train: int) -> int:
    """Steps of one epoch: the spec's value, else one pass over the training set."""
    return recipe.steps_per_epoch or max(1, math.ceil(n_train / recipe.batch_size))


def label_fn(recipe: TrainSpec, num_classes: int, outputs: list[str] | None):
    """Graph function turning an int label batch into what the loss wants (one-hot, dict)."""
    import tensorflow as tf

    def labels(y):
        target = tf.one_hot(y, num_classes) if recipe.loss.one_hot else y
        return {name: target for name in outputs} if outputs else target

    return labels
