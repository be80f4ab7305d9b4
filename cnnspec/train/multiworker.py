"""Multi-worker training (MultiWorkerMirroredStrategy) with a distributed custom step.

Why not ``model.fit``: on TensorFlow 2.21 / Keras 3.15, ``fit`` under
MultiWorkerMirroredStrategy fails with "Attempt to convert a value (PerReplica...) to a Tensor"
(keras-team/keras#20585, tensorflow/tensorflow#72388), and then again in the per-replica log
reduction. The documented tf.distribute way through is a custom step run with ``strategy.run``:
per-replica losses are averaged over the *global* batch (``tf.nn.compute_average_loss``) and the
Keras optimizer all-reduces the gradients itself when it applies them in a replica context.
``tests/test_train_distributed.py`` checks that ``fit`` still fails, so we learn when upstream
fixes it and this module can go.

Pitfalls handled (measured on this stack):
- the input pipeline shards by element (AutoShardPolicy.DATA), so each worker trains on its
  own part of every global batch (FILE sharding of one array source would duplicate the data);
- a missing peer would hang forever: a watchdog process kills a worker that has not completed
  its first step in CNNSPEC_WORKER_TIMEOUT seconds (default 300; exit status 137 with a one-line
  message), and collectives time out after it too;
- only the chief (worker 0) writes the run directory and model.keras; other workers write to a
  temporary directory that is removed at the end.
- resume: the chief checkpoints like the fit path; restarted with ``--resume`` it restores and
  broadcasts the state and epoch to the other workers (restarted with their first command).
  Early stopping and reduce-on-plateau work through Keras' own callbacks; their counters are
  checkpointed and broadcast too, so every worker stops at the same epoch (early stopping's
  best weights are restored on the chief only: the others' weights are discarded). The chief
  writes TensorBoard scalars per epoch.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import keras

from ..data import make_pipeline
from ..errors import RunError
from . import lifecycle, recipe, rundir
from .callbacks import RunState
from .trainer import replay, tensorboard_available

_WATCHDOG = """
import os, sys, time
parent, deadline, message = int(sys.argv[1]), time.time() + float(sys.argv[2]), sys.argv[3]
while time.time() < deadline:
    if os.getppid() != parent:  # the worker ended: nothing to watch
        sys.exit(0)
    time.sleep(0.5)
print(message, file=sys.stderr, flush=True)
os.kill(parent, 9)
"""


class Watchdog:
    """Kills this process unless ``cancel()`` comes within ``seconds`` (a peer never joined).

    A separate process, because TensorFlow waits for peers inside C++ while holding the GIL:
    no Python thread or signal handler of the worker runs then (even SIGTERM is ignored).
    """

    def __init__(self, seconds: float, message: str) -> None:
        self.seconds, self.message = seconds, message
        self.process: subprocess.Popen | None = None

    def start(self) -> Watchdog:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(self.seconds), self.message]
        )
        return self

    def cancel(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def train_epochs(session: Any, extra: list[Any] | None = None) -> RunState:
    """Train the session's epochs as worker ``hw.worker_index`` of ``hw.workers`` (TF_CONFIG).

    ``extra``: callbacks driven with the run's own on the chief only (e.g. tracking's epoch
    logger; see ``lifecycle.epoch_callbacks``).

    Resume: restart the chief with ``--resume RUN_DIR`` and the other workers with their first
    command; the chief restores its checkpoint and broadcasts the state and epoch to everyone.
    """
    import tensorflow as tf

    hw = session.hw
    opt = _optimizer(session)
    step = _train_step(session, opt)
    callbacks, state, first = _start(session, opt, extra)
    r = session.recipe
    last = first if any(getattr(cb, "stopped_epoch", 0) for cb in callbacks.callbacks) else r.epochs
    train_ds = make_pipeline(
        session.data.train, r.batch_size, training=True, augment=r.augment, seed=r.seed,
        repeat=True, labels=recipe.label_fn(r, session.data.num_classes, None),
        reading=session.data.reading("train"),
    )  # fmt: skip
    if first and last > first:
        train_ds = replay(train_ds, first * session.steps, session.echo)
    iterator = iter(hw.strategy.experimental_distribute_dataset(train_ds))
    try:
        for epoch in range(first, last):
            if not _epoch(session, step, iterator, callbacks, state, epoch):
                break
        callbacks.on_train_end()
    except tf.errors.OpError as exc:
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise RunError(
            f"worker {hw.worker_index}: distributed training failed: {type(exc).__name__}: "
            f"{first_line}",
            hint="check that every worker in TF_CONFIG is running and reachable",
        ) from None
    finally:
        if hw.watchdog:
            hw.watchdog.cancel()
    return state


def _optimizer(session: Any) -> Any:
    """The recipe's optimizer, built in the strategy's scope (loss scaling under float16)."""
    hw, model = session.hw, session.model
    with hw.strategy.scope():
        opt = recipe.optimizer(session.recipe, session.steps)
        if hw.policy == "mixed_float16":
            import keras

            opt = keras.optimizers.LossScaleOptimizer(opt)
            hw.loss_scaling = True
        opt.build(model.trainable_variables)
    # Keras callbacks driven by hand read model.optimizer (lr) and set model.stop_training.
    model.optimizer = opt
    model.stop_training = False
    return opt


def _start(session: Any, opt: Any, extra: list[Any] | None) -> tuple[Any, RunState, int]:
    """The chief's checkpoint given to every worker: (callbacks, state, first epoch)."""
    import keras

    from .trainer import recipe_callbacks

    hw, model, r = session.hw, session.model, session.recipe
    restored = lifecycle.restore(session) if hw.is_chief else lifecycle.Restored()
    driven = recipe_callbacks(r, restored.callback_states)
    state = lifecycle.start_state(session, restored)
    cbs = lifecycle.epoch_callbacks(session, state, driven, None, extra)
    if hw.is_chief and tensorboard_available():
        cbs.append(_Board(session.run / rundir.LOGS))
    callbacks = keras.callbacks.CallbackList(cbs, model=model)
    callbacks.on_train_begin()  # on the chief the recipe callbacks take their restored state
    # Only the chief has the checkpoint: every worker takes its state, epoch and callbacks'
    # counters (None, a best not yet set, travels as NaN).
    values = [v for cb in driven for v in cb.state().values()]
    numbers = [float(restored.epochs_done), *(math.nan if v is None else float(v) for v in values)]
    numbers = _broadcast_from_chief(hw.strategy, _state_variables(model, opt), numbers)
    done, received = int(numbers[0]), iter(numbers[1:])
    for cb in driven:  # the same callbacks and keys on every worker (the same recipe)
        got = {key: next(received) for key in cb.state()}
        cb.apply({k: None if math.isnan(x) else x for k, x in got.items()})
    if done:
        session.echo(f"resumed after epoch {done}")
    state.epochs_done = state.first_epoch = min(done, r.epochs)
    return callbacks, state, min(done, r.epochs)


def _epoch(session: Any, step: Any, iterator: Any, callbacks: Any, state: RunState,
           epoch: int) -> bool:  # fmt: skip
    """Train one epoch through the run's callbacks; False when the run must stop."""
    r, names = session.recipe, session.metric_names
    callbacks.on_epoch_begin(epoch)
    t0 = time.perf_counter()
    totals = [0.0] * (len(names) + 2)
    for i in range(session.steps):
        batch = [float(v) for v in step(iterator)]
        totals = [t + v for t, v in zip(totals, batch, strict=True)]
        callbacks.on_train_batch_end(i, {"loss": batch[0] / max(batch[-1], 1.0)})
        if session.hw.watchdog:
            session.hw.watchdog.cancel()
        if state.nan is not None:
            return False
    count = max(totals[-1], 1.0)
    logs = dict(zip(["loss", *names], [t / count for t in totals[:-1]], strict=True))
    if session.data.val is not None:
        stats = lifecycle.split_stats(session.model, session)
        scores, _ = lifecycle.evaluate_split(stats, session.data.val, session)
        logs.update({f"val_{k}": v for k, v in scores.items()})
    callbacks.on_epoch_end(epoch, logs)  # lr, timing, recipe, checkpoint, history.csv, board
    session.echo(
        f"epoch {epoch + 1}/{r.epochs} - {time.perf_counter() - t0:.1f}s - "
        + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
    )
    return not session.model.stop_training


class _Board(keras.callbacks.Callback):
    """TensorBoard scalars per epoch, named as Keras' TensorBoard callback names them (that
    callback needs ``fit``'s internals)."""

    def __init__(self, folder: Path) -> None:
        import tensorflow as tf

        super().__init__()
        self.writers = {
            "": tf.summary.create_file_writer(str(folder / "train")),
            "val_": tf.summary.create_file_writer(str(folder / "validation")),
        }

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        logs = logs or {}
        for prefix, writer in self.writers.items():
            with writer.as_default(step=epoch):
                for key, value in logs.items():
                    if key.startswith("val_") == (prefix == "val_"):
                        tf.summary.scalar(f"epoch_{key[len(prefix) :]}", value)
            writer.flush()


def _state_variables(model: Any, opt: Any) -> list[Any]:
    """Every variable of the training state (model weights, optimizer slots and counters)."""
    seen: dict[int, Any] = {}
    for v in [*model.variables, *opt.variables]:
        seen.setdefault(id(v), v)
    return list(seen.values())


def _broadcast_from_chief(strategy: Any, variables: list[Any], numbers: list[float]) -> list[float]:
    """Give every worker the chief's values of ``variables``; return the chief's ``numbers``.

    One all-reduce in which only global replica 0 (the chief's first device) contributes
    (the others add zeros, not their values times 0: NaN and inf times 0 are NaN).
    """
    import tensorflow as tf

    values = [tf.cast(tf.convert_to_tensor(v.value), tf.float64) for v in variables]
    values.append(tf.constant(numbers, tf.float64))

    def replica(vals):
        ctx = tf.distribute.get_replica_context()
        chief = tf.equal(ctx.replica_id_in_sync_group, 0)
        return ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, [tf.where(chief, v, tf.zeros_like(v)) for v in vals]
        )

    @tf.function
    def broadcast(vals):
        return strategy.run(replica, args=(vals,))

    result = strategy.experimental_local_results(broadcast(values))[0]
    for var, value in zip(variables, result[:-1], strict=True):
        var.assign(tf.cast(value, var.dtype))
    return [float(x) for x in result[-1].numpy()]


def _train_step(session: Any, opt: Any):
    """A tf.function running one global batch on every replica; returns summed stats:
    [loss, one per metric (``recipe.metric_hits``), count]."""
    import tensorflow as tf

    spec, model, strategy = session.spec, session.model, session.hw.strategy
    r = spec.train
    loss_fn = recipe.loss(r, reduction=None)  # per example
    hits = recipe.metric_hits(session.metric_names)
    weights = spec.loss_weights()
    global_batch = r.batch_size

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            preds = model(x, training=True)
            if isinstance(preds, dict):
                per_example = tf.add_n(
                    [
                        weights.get(k, 1.0) * tf.cast(loss_fn(y, p), tf.float32)
                        for k, p in preds.items()
                    ]
                )
            else:
                per_example = tf.cast(loss_fn(y, preds), tf.float32)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = opt.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        main = tf.cast(preds[spec.output_name] if isinstance(preds, dict) else preds, tf.float32)
        truth = tf.argmax(y, axis=-1) if r.loss.one_hot else tf.cast(y, tf.int64)
        sums = [tf.reduce_sum(h(main, truth)) for h in hits]
        count = tf.cast(tf.shape(x)[0], tf.float32)
        return [tf.reduce_sum(per_example), *sums, count]

    @tf.function
    def step(iterator):
        values = strategy.run(replica_step, args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    return step
