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
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..data import make_pipeline
from ..errors import RunError
from . import recipe, rundir

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


def train_multiworker(spec: Any, hw: Any, *, run_dir, resume: bool, echo, started: float):
    """Train ``spec`` as worker ``hw.worker_index`` of ``hw.workers`` (TF_CONFIG).

    Resume: restart the chief with ``--resume RUN_DIR`` and the other workers with their first
    command; the chief restores its checkpoint and broadcasts the state and epoch to everyone.
    """
    import tensorflow as tf

    from .callbacks import callback_states, restore, save_checkpoint
    from .trainer import (
        RunResult,
        describe,
        load_training_data,
        prepare_run_dir,
        recipe_callbacks,
        replay,
        summary,
        tensorboard_available,
        training_model,
    )

    r = spec.train
    watchdog = hw.watchdog  # started before the strategy (hardware.setup)
    data = load_training_data(spec, echo=echo if hw.is_chief else None)
    if hw.is_chief:
        run = prepare_run_dir(spec, data, hw, run_dir, resume=resume)
    else:
        run = Path(tempfile.mkdtemp(prefix=f"cnnspec-worker{hw.worker_index}-"))
    echo(describe(spec, data, hw, run) + f" [worker {hw.worker_index}/{hw.workers}]")

    strategy = hw.strategy
    steps = recipe.steps_per_epoch(r, data.sizes["train"])
    with strategy.scope():
        model = training_model(spec)
        opt = recipe.optimizer(r, steps)
        if hw.policy == "mixed_float16":
            import keras

            opt = keras.optimizers.LossScaleOptimizer(opt)
            hw.loss_scaling = True
        opt.build(model.trainable_variables)
    step = _train_step(spec, model, opt, strategy)
    evaluate = _eval_step(spec, model)
    labels = recipe.label_fn(r, data.num_classes, None)
    train_ds = make_pipeline(
        data.train, r.batch_size, training=True, augment=r.augment, seed=r.seed, repeat=True,
        labels=labels,
    )  # fmt: skip

    # Keras callbacks driven by hand through their public hooks: they read the epoch logs,
    # set model.stop_training (early stopping) or model.optimizer's learning rate (plateau).
    model.optimizer = opt
    model.stop_training = False
    done, restored = 0, {}
    if hw.is_chief:
        try:
            done = restore(model, run / rundir.CHECKPOINTS, run / rundir.HISTORY)
            restored = callback_states(run / rundir.CHECKPOINTS)
        except (OSError, ValueError) as exc:
            raise RunError(
                f"cannot restore the checkpoint in {run / rundir.CHECKPOINTS}: {exc}"
            ) from None
    driven = recipe_callbacks(r, restored)
    for cb in driven:
        cb.set_model(model)
        cb.on_train_begin()  # on the chief they take their restored state here
    # Only the chief has the checkpoint: every worker takes its state, epoch and callbacks'
    # counters (None, a best not yet set, travels as NaN).
    values = [v for cb in driven for v in cb.state().values()]
    numbers = [float(done), *(math.nan if v is None else float(v) for v in values)]
    numbers = _broadcast_from_chief(strategy, _state_variables(model, opt), numbers)
    done, received = int(numbers[0]), iter(numbers[1:])
    for cb in driven:  # the same callbacks and keys on every worker (the same recipe)
        state = {key: next(received) for key in cb.state()}
        cb.apply({k: None if math.isnan(x) else x for k, x in state.items()})
    # killed after early stopping ended the run, before model.keras: nothing more to train
    stopped = any(getattr(cb, "stopped_epoch", 0) for cb in driven)
    if done:
        echo(f"resumed after epoch {done}")
        if not stopped:
            train_ds = replay(train_ds, min(done, r.epochs) * steps, echo)
    iterator = iter(strategy.experimental_distribute_dataset(train_ds))
    history = rundir.read_history(run / rundir.HISTORY) if hw.is_chief else []
    board = _Board(run / rundir.LOGS) if hw.is_chief and tensorboard_available() else None
    epochs_done = min(done, r.epochs)
    seconds: list[float] = []
    try:
        for epoch in range(epochs_done, epochs_done if stopped else r.epochs):
            t0 = time.perf_counter()
            totals = [0.0, 0.0, 0.0]
            for _ in range(steps):
                values = step(iterator)
                totals = [t + float(v) for t, v in zip(totals, values, strict=True)]
                if watchdog:
                    watchdog.cancel()
            seconds.append(time.perf_counter() - t0)
            loss_sum, correct, count = totals
            if not all(map(_finite, totals)):
                raise RunError(
                    f"training stopped: the loss became {loss_sum / count} in epoch {epoch + 1}",
                    hint="lower the learning rate",
                )
            row = {"epoch": epoch + 1, "loss": loss_sum / count, "accuracy": correct / count}
            if data.val is not None:
                row.update(
                    {
                        f"val_{k}": v
                        for k, v in _evaluate(evaluate, data.val, r, data.num_classes).items()
                    }
                )
            row["lr"] = float(_current_lr(opt))
            history.append(row)
            epochs_done = epoch + 1
            logs = {k: v for k, v in row.items() if k != "epoch"}
            for cb in driven:  # before the checkpoint that keeps their state
                cb.on_epoch_end(epoch, logs)
            if hw.is_chief:  # checkpoint first, then the row (as on the fit path)
                save_checkpoint(
                    model, run / rundir.CHECKPOINTS, epochs_done, logs, callbacks=driven
                )
                rundir.write_history(run / rundir.HISTORY, history)
            if board:
                board.write(epoch, logs)
            echo(
                f"epoch {epoch + 1}/{r.epochs} - {seconds[-1]:.1f}s - "
                + " - ".join(f"{k}: {v:.4f}" for k, v in row.items() if k != "epoch")
            )
            if model.stop_training:
                break
        for cb in driven:
            cb.on_train_end()
    except tf.errors.OpError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RunError(
            f"worker {hw.worker_index}: distributed training failed: {type(exc).__name__}: {first}",
            hint="check that every worker in TF_CONFIG is running and reachable",
        ) from None
    finally:
        if watchdog:
            watchdog.cancel()

    from ..build import inference_model

    infer = inference_model(model, spec)
    last = history[-1] if history else {}
    metrics: dict[str, Any] = {
        "status": "early_stopped" if epochs_done < r.epochs else "completed",
        "epochs": r.epochs,
        "epochs_done": epochs_done,
        "resumed_from_epoch": done,
        "train": {k: v for k, v in last.items() if k in ("loss", "accuracy")},
        "val": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        "test": _evaluate(evaluate, data.test, r, data.num_classes)
        if data.test is not None
        else {},
        "images_per_s": _throughput(seconds, steps * r.batch_size),
        "train_time_s": sum(seconds),
        "wall_time_s": time.time() - started,
        "hardware": hw.describe(),
        "worker": hw.worker_index,
    }
    if hw.is_chief and history:
        earlier = rundir.read_json(run / rundir.METRICS)
        if not seconds and earlier:  # a finished run resumed: keep its throughput
            for key in ("images_per_s", "train_time_s"):
                metrics[key] = earlier.get(key, metrics[key])
        rundir.plot_curves(history, run / rundir.CURVES)
        rundir.save_model(infer, run / rundir.MODEL)
        rundir.write_json(run / rundir.METRICS, metrics)
    else:
        shutil.rmtree(run, ignore_errors=True)
    result = RunResult(run, metrics, history)
    echo(summary(result))
    return result


class _Board:
    """TensorBoard scalars per epoch, named as Keras' TensorBoard callback names them."""

    def __init__(self, folder: Path) -> None:
        import tensorflow as tf

        self.writers = {
            "": tf.summary.create_file_writer(str(folder / "train")),
            "val_": tf.summary.create_file_writer(str(folder / "validation")),
        }

    def write(self, epoch: int, logs: dict[str, float]) -> None:
        import tensorflow as tf

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


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _throughput(seconds: list[float], images_per_epoch: int) -> float:
    secs = seconds[1:] if len(seconds) > 1 else seconds
    return images_per_epoch * len(secs) / sum(secs) if sum(secs) > 0 else 0.0


def _current_lr(opt: Any) -> float:
    import keras

    return keras.ops.convert_to_numpy(opt.learning_rate)


def _main_output(spec: Any, preds: Any) -> Any:
    return preds[spec.output_name] if isinstance(preds, dict) else preds


def _train_step(spec: Any, model: Any, opt: Any, strategy: Any):
    """A tf.function running one global batch on every replica; returns summed stats."""
    import tensorflow as tf

    r = spec.train
    loss_fn = recipe.loss(r, reduction=None)  # per example
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
        main = _main_output(spec, preds)
        truth = tf.argmax(y, axis=-1) if r.loss.one_hot else tf.cast(y, tf.int64)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(main, axis=-1), truth), tf.float32))
        count = tf.cast(tf.shape(x)[0], tf.float32)
        return tf.reduce_sum(per_example), correct, count

    @tf.function
    def step(iterator):
        values = strategy.run(replica_step, args=next(iterator))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

    return step


def _eval_step(spec: Any, model: Any):
    """A local (not distributed) tf.function: summed loss, correct and count of a batch."""
    import tensorflow as tf

    r = spec.train
    loss_fn = recipe.loss(r, reduction=None)

    @tf.function
    def evaluate(x, y):
        probs = tf.cast(_main_output(spec, model(x, training=False)), tf.float32)
        truth = tf.argmax(y, axis=-1) if r.loss.one_hot else tf.cast(y, tf.int64)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=-1), truth), tf.float32))
        return tf.reduce_sum(loss_fn(y, probs)), correct, tf.cast(tf.shape(x)[0], tf.float32)

    return evaluate


def _evaluate(evaluate: Any, ds: Any, r: Any, num_classes: int) -> dict[str, float]:
    """Mean loss and accuracy of a split, computed locally on this worker."""
    labels = recipe.label_fn(r, num_classes, None)
    totals = [0.0, 0.0, 0.0]
    for x, y in make_pipeline(ds, r.batch_size, training=False, labels=labels):
        totals = [t + float(v) for t, v in zip(totals, evaluate(x, y), strict=True)]
    loss_sum, correct, count = totals
    return {"loss": loss_sum / max(count, 1.0), "accuracy": correct / max(count, 1.0)}
