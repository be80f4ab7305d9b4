"""Train a spec: ``train()`` runs the run's life (``lifecycle.py``) around one of two loops.

``fit_epochs`` here trains with ``model.fit`` (one process, one device or MirroredStrategy);
``multiworker.train_epochs`` with a distributed custom step (Keras 3's ``fit`` crashes under
MultiWorkerMirroredStrategy on TF 2.21; see there).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import Data, make_pipeline
from ..data.images import read_errors
from . import hardware, lifecycle, recipe, rundir
from .callbacks import ResumableEarlyStopping, ResumableReduceLROnPlateau, RunState
from .lifecycle import RunResult, Session, load_training_data, summary

__all__ = ["RunResult", "load_training_data", "summary", "tensorboard_available", "train"]


def train(
    spec: Any,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    verbose: int | None = None,
    echo: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
    data: Data | None = None,
) -> RunResult:
    """Train ``spec`` (a ModelSpec) by its ``train:`` recipe; write and return the run.

    ``callbacks``: extra Keras callbacks, after the run's own (e.g. a search's pruning hook,
    tracking's epoch logger); in multi-worker training on the chief only.

    ``run_dir``: the run directory (default ``runs/<name>/<timestamp>``); with ``resume`` it
    must be an earlier run's directory, and training continues from its last good epoch.
    ``verbose``: Keras progress (1 bar, 2 one line per epoch, 0 silent; default: 1 on a TTY).
    ``data``: already loaded data (``load_training_data(spec, source=...)``) instead of the
    recipe's ``train.data``.
    """
    echo = echo or (lambda text: print(text, flush=True))
    started = time.time()
    hw = hardware.setup(spec.train)  # first: before any TensorFlow op
    multi = hw.distribute == "multi_worker"
    if resume and not multi and (done := finished(spec, Path(run_dir))) is not None:
        echo(
            f"{run_dir} already finished ({done.metrics.get('status')}, "
            f"{done.metrics.get('epochs_done')} epochs): nothing to train; its files are kept. "
            f"Hint: --resume {run_dir} --epochs N trains on to epoch N."
        )
        return done
    session = lifecycle.prepare(
        spec, hw, run_dir=run_dir, resume=resume, echo=echo, started=started, data=data
    )
    worker = f" [worker {hw.worker_index}/{hw.workers}]" if multi else ""
    echo(describe(session) + worker)
    if hw.is_chief and not tensorboard_available():
        echo("note: the tensorboard package is not installed, so no TensorBoard logs are written")
    try:
        if multi:
            from .multiworker import train_epochs as multiworker_epochs

            state = multiworker_epochs(session, extra=callbacks)
        else:
            state = fit_epochs(session, verbose=verbose, extra=callbacks)
        result = lifecycle.finish(session, state)
    except read_errors() as exc:
        # an image that does not decode, or was deleted (cache: none): name it
        raise session.data.read_failure(
            exc, spec.input, "training failed on its input data"
        ) from None
    if getattr(spec.backbone, "fine_tune", None) is not None:  # transfer learning, phase 2
        from .finetune import fine_tune_run

        result = fine_tune_run(session, result, verbose=verbose)
    echo(summary(result))
    return result


def finished(spec: Any, run: Path) -> RunResult | None:
    """The result of ``run`` if resuming it has nothing to do, else None.

    Finished: complete (model.keras and metrics.json), completed up to the recipe's epoch
    count or early-stopped under the same count, and phase 2 done if the spec fine-tunes.
    """
    m = rundir.read_json(run / rundir.METRICS)
    if m is None or not rundir.is_complete(run):
        return None
    epochs = spec.train.epochs
    done = (m.get("status") == "completed" and m.get("epochs_done", 0) >= epochs) or (
        m.get("status") == "early_stopped" and m.get("epochs") == epochs
    )
    if getattr(spec.backbone, "fine_tune", None) is not None and "phase2" not in m:
        done = False
    return RunResult(run, m, rundir.read_history(run / rundir.HISTORY)) if done else None


def describe(session: Session) -> str:
    """The line that says what this session trains, how and where."""
    spec, data, hw, run = session.spec, session.data, session.hw, session.run
    r = spec.train
    sizes = data.sizes
    return (
        f"training {spec.name} on {data.source or r.data} ({sizes['train']} train / {sizes.get('val', 0)} val / "
        f"{sizes.get('test', 0)} test, {data.num_classes} classes) for {r.epochs} epochs, "
        f"batch {r.batch_size}, {r.optimizer.kind} + {r.schedule.kind}; "
        f"{hw.describe()['device']}, {hw.policy}, jit {'on' if hw.jit else 'off'}, "
        f"distribute {hw.distribute} ({hw.replicas} replica{'s' if hw.replicas > 1 else ''}), "
        f"deterministic {'on' if hw.deterministic else 'off'} -> {run}"
    )


def training_model(spec: Any) -> Any:
    """The training model: the spec's graph with its auxiliary heads.

    A single-output model when the spec has no heads (plain metric names), else dict outputs.
    Under a mixed-precision policy the builder keeps the output layers in float32.
    """
    import keras

    from ..build import build_model

    model = build_model(spec, heads=True)
    outputs = model.output
    if isinstance(outputs, dict) and len(outputs) == 1:
        model = keras.Model(model.inputs, next(iter(outputs.values())), name=model.name)
    return model


def _output_names(model: Any) -> list[str] | None:
    out = model.output
    return list(out) if isinstance(out, dict) else None


def compile_model(
    model: Any, spec: Any, hw, steps: int, names: list[str], plans: list[Any] | None = None
) -> None:
    """Compile the training model from the recipe (loss weights for auxiliary heads);
    ``names``: the main output's metrics to log (its task's ``active_metrics``); ``plans``: every
    output's task, loss and metrics (``cnnspec.tasks.plan.outputs``; default: classification)."""
    r = spec.train
    outputs = _output_names(model)
    plans = {p.name: p for p in plans or []}
    main = plans.get(spec.output_name)

    def loss_of(name: str):  # an auxiliary head is trained with the main output's loss
        plan = plans.get(name, main)
        return recipe.loss(r) if plan is None else plan.task.keras_loss(plan.loss)

    def metrics_of(plan) -> list[Any]:
        return plan.task.keras_metrics(plan, plan.loss.one_hot)

    main_metrics = recipe.metrics(r, names) if main is None else metrics_of(main)
    if outputs:
        weights = spec.loss_weights()
        heads = {n: metrics_of(p) for n, p in plans.items() if n != spec.output_name}
        model.compile(
            optimizer=recipe.optimizer(r, steps),
            loss={name: loss_of(name) for name in outputs},
            loss_weights={name: float(weights.get(name, 1.0)) for name in outputs},
            metrics={spec.output_name: main_metrics, **heads},
            jit_compile=hw.jit,
        )
    else:
        model.compile(
            optimizer=recipe.optimizer(r, steps),
            loss=loss_of(spec.output_name),
            metrics=main_metrics,
            jit_compile=hw.jit,
        )


def recipe_callbacks(r: Any, restored: dict[str, dict] | None = None) -> list[Any]:
    """Early stopping and reduce-on-plateau, as the recipe asks (also driven by multiworker).

    ``restored``: their state from the checkpoint (``callback_states``), applied when training
    begins, so that a resumed run stops and lowers the lr where the uninterrupted one would.
    """
    restored = restored or {}
    cbs: list[Any] = []
    if r.early_stopping is not None:
        es = r.early_stopping
        cbs.append(
            ResumableEarlyStopping(
                epochs=r.epochs,
                restored=restored.get(ResumableEarlyStopping.key),
                monitor=es.monitor,
                patience=es.patience,
                min_delta=es.min_delta,
                mode=r.monitor_mode(es.monitor, es.mode),
                restore_best_weights=es.restore_best_weights,
            )
        )
    if r.schedule.kind == "reduce_on_plateau":
        p = r.schedule.params
        cbs.append(
            ResumableReduceLROnPlateau(
                restored=restored.get(ResumableReduceLROnPlateau.key),
                monitor=p.monitor,
                factor=p.factor,
                patience=p.patience,
                min_delta=p.min_delta,
                min_lr=p.min_lr,
                mode=r.monitor_mode(p.monitor),
            )
        )
    return cbs


def tensorboard_available() -> bool:
    """TensorBoard logs need the ``tensorboard`` package (tf.summary's implementation)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def fit_epochs(session: Session, *, verbose: int | None, extra: list[Any] | None) -> RunState:
    """Train the session's epochs with ``model.fit``; the run's state afterwards."""
    import keras

    spec, hw, model, r = session.spec, session.hw, session.model, session.recipe
    with hw.strategy.scope():
        compile_model(model, spec, hw, session.steps, session.metric_names, session.outputs)
        # Keras wraps the optimizer for mixed_float16 (dynamic loss scaling): record the fact.
        hw.loss_scaling = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        restored = lifecycle.restore(session)
        recipe_cbs = recipe_callbacks(r, restored.callback_states)
    if hw.jit and not model.jit_compile:  # Keras drops XLA silently (with a warning)
        session.echo(
            "note: Keras compiled without XLA (a layer without XLA support, or op determinism "
            "left on by an earlier run in this process)"
        )
        hw.jit = False
    outputs = _output_names(model)
    labels = recipe.targets_fn(session.outputs, outputs)
    train_ds = make_pipeline(
        session.data.train, r.batch_size, training=True, augment=r.augment, seed=r.seed,
        repeat=True, labels=labels, reading=session.data.reading("train"),
    )  # fmt: skip
    # killed after early stopping ended the run, before model.keras: nothing more to train
    stopped = any(isinstance(cb, ResumableEarlyStopping) and cb.stopped() for cb in recipe_cbs)
    done = min(restored.epochs_done, r.epochs)
    if done and not stopped:
        train_ds = replay(train_ds, done * session.steps, session.echo)
    val = session.data.val
    val_ds = make_pipeline(val, r.batch_size, training=False, labels=labels) if val else None
    state = lifecycle.start_state(session, restored)
    cbs = lifecycle.epoch_callbacks(
        session, state, recipe_cbs, spec.output_name if outputs else None
    )
    if hw.is_chief and tensorboard_available():
        logs = str(session.run / rundir.LOGS)
        cbs.append(keras.callbacks.TensorBoard(logs, write_graph=False, profile_batch=0))
    model.fit(
        train_ds,
        epochs=done if stopped else r.epochs,
        initial_epoch=done,
        steps_per_epoch=session.steps,
        validation_data=val_ds,
        callbacks=[*cbs, *(extra or [])],
        verbose=(1 if sys.stdout.isatty() else 2) if verbose is None else verbose,
        shuffle=False,  # the pipeline shuffles (seeded)
    )
    return state


def replay(train_ds: Any, batches: int, echo: Callable[[str], None]) -> Any:
    """The training stream after its first ``batches`` batches: where a resumed run goes on.

    The pipeline is a deterministic function of the seed (seeded shuffle reshuffled each
    epoch, seeded augmentation, ``deterministic`` tf.data), so skipping the batches the earlier
    sessions consumed gives exactly the batches the uninterrupted run would see next; with the
    restored weights, optimizer and random-generator states the resumed run is bit-identical
    to the uninterrupted one on CPU. The cost is reading (not training on) those batches.
    """
    echo(f"resuming: skipping the {batches} batches already trained on (input replay)")
    return train_ds.skip(batches)
