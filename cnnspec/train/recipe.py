"""The `train:` recipe made concrete: Keras optimizers, schedules, losses and metrics.

One small builder per kind, looked up by the kind name (the spec's single-key mapping), so a
new optimizer or schedule is one function and one spec class.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..spec.train import TrainSpec

# Classification's losses and metrics (cnnspec/tasks/classification.py), kept here under their
# old names for the callers of this module.
from ..tasks.classification import LOSSES, METRIC_KINDS  # noqa: F401
from ..tasks.classification import metric_kind as _metric_kind

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


# --- losses and metrics: the task's (cnnspec.tasks; the recipe's main output) ------------------


def loss(recipe: TrainSpec, reduction: str | None = "sum_over_batch_size", task: str | None = None):
    """The Keras loss of ``task`` (default classification) for the recipe's ``loss:``
    (``reduction=None`` gives per-example losses for custom loops)."""
    from ..tasks import get

    return get(task).keras_loss(recipe.loss, reduction)


def metrics(recipe: TrainSpec, names: list[str] | None = None) -> list[Any]:
    """Keras metrics named as in the spec (``accuracy``, ``top3``, ...); ``names``: a subset
    (the task's ``active_metrics``), default all of the recipe's."""
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


def targets_fn(plans: list[Any], outputs: list[str] | None):
    """Graph function turning a data label batch into every output's target (``plans``:
    ``cnnspec.tasks.plan.outputs``; an auxiliary head learns the main output's target)."""

    def labels(y):
        made = {p.name: p.task.target(y, p) for p in plans}
        main = made[plans[0].name]
        return {o: made.get(o, main) for o in outputs} if outputs else main

    return labels
