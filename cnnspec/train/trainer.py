"""Train a spec with ``model.fit``: one process, one device or MirroredStrategy.

The multi-worker path lives in ``multiworker.py`` (Keras 3's ``fit`` crashes under
MultiWorkerMirroredStrategy on TF 2.21; see there).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import Data, decode_crop, load_data, make_pipeline
from ..errors import RunError
from . import hardware, recipe, rundir
from .callbacks import (
    Checkpoint,
    History,
    LogNames,
    NanGuard,
    ResumableEarlyStopping,
    ResumableReduceLROnPlateau,
    RunState,
    Timer,
    callback_states,
    checkpoint_record,
    restore,
)


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def train(
    spec: Any,
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    verbose: int | None = None,
    echo: Callable[[str], None] | None = None,
    callbacks: list[Any] | None = None,
) -> RunResult:
    """Train ``spec`` (a ModelSpec) by its ``train:`` recipe; write and return the run.

    ``callbacks``: extra Keras callbacks, after the run's own (e.g. a search's pruning hook).

    ``run_dir``: the run directory (default ``runs/<name>/<timestamp>``); with ``resume`` it
    must be an earlier run's directory, and training continues from its last good epoch.
    ``verbose``: Keras progress (1 bar, 2 one line per epoch, 0 silent; default: 1 on a TTY).
    """
    echo = echo or (lambda text: print(text, flush=True))
    started = time.time()
    hw = hardware.setup(spec.train)  # first: before any TensorFlow op
    if hw.distribute == "multi_worker":
        from .multiworker import train_multiworker

        return train_multiworker(
            spec, hw, run_dir=run_dir, resume=resume, echo=echo, started=started
        )

    if resume and (done := finished(spec, Path(run_dir))) is not None:
        echo(
            f"{run_dir} already finished ({done.metrics.get('status')}, "
            f"{done.metrics.get('epochs_done')} epochs): nothing to train; its files are kept. "
            f"Hint: --resume {run_dir} --epochs N trains on to epoch N."
        )
        return done
    data = load_training_data(spec, echo=echo)  # says how the data is cached, first
    run = prepare_run_dir(spec, data, hw, run_dir, resume)
    echo(describe(spec, data, hw, run))
    if not tensorboard_available():
        echo("note: the tensorboard package is not installed, so no TensorBoard logs are written")
    import tensorflow as tf

    try:
        result = _fit(
            spec, data, hw, run, verbose=verbose, echo=echo, started=started, extra=callbacks
        )
    except tf.errors.InvalidArgumentError as exc:
        # an image that does not decode (cache: false): name it
        raise data.read_failure(exc, spec.input, "training failed on its input data") from None
    if getattr(spec.backbone, "fine_tune", None) is not None:  # transfer learning, phase 2
        from .finetune import fine_tune_run

        result = fine_tune_run(spec, data, hw, run, result, verbose=verbose, echo=echo)
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


def load_training_data(spec: Any, echo: Callable[[str], None] | None = None) -> Data:
    """The recipe's data, converted to the spec's input and checked against its classes."""
    r = spec.train
    return load_data(
        r.data,
        spec.input,
        seed=r.seed,
        validation_split=r.validation_split,
        test_split=r.test_split,
        num_classes=spec.num_classes,
        cache=r.cache,
        crop=decode_crop(r.augment),
        echo=echo,
    )


def prepare_run_dir(spec, data: Data, hw, run_dir, resume: bool) -> Path:
    """Create (or, resuming, reuse) the run directory; write spec.yaml and meta.json."""
    import yaml

    if resume:
        run = Path(run_dir)
        if not (run / rundir.SPEC).is_file():
            raise RunError(f"{run} is not a run directory (it has no {rundir.SPEC})")
    elif run_dir is None:
        run = rundir.new_run_dir(spec.name)
    else:
        run = Path(run_dir)
        if run.exists() and any(run.iterdir()):
            raise RunError(
                f"run directory {run} exists and is not empty",
                hint=f"choose a new --out, or continue it with --resume {run}",
            )
        run.mkdir(parents=True, exist_ok=True)
    if hw.is_chief:
        text = yaml.safe_dump(spec.source_data, sort_keys=False, allow_unicode=True)
        rundir.write_text(run / rundir.SPEC, text)
        rundir.write_json(run / rundir.META, meta(spec, data, hw))
    return run


def meta(spec, data: Data, hw) -> dict[str, Any]:
    """meta.json: what export/predict need to use model.keras without the spec."""
    return {
        "name": spec.name,
        "input_shape": list(spec.input),
        "class_names": list(data.class_names),
        "num_classes": data.num_classes,
        "preprocess": spec.preprocess,
        "output_name": spec.output_name,
        "heads": list(spec.heads),
        "data": spec.train.data,
        "input": "float32 pixels in [0, 255], channels-last; the model rescales",
        "hardware": hw.describe(),
        "versions": rundir.versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def describe(spec, data: Data, hw, run: Path) -> str:
    r = spec.train
    sizes = data.sizes
    return (
        f"training {spec.name} on {r.data} ({sizes['train']} train / {sizes.get('val', 0)} val / "
        f"{sizes.get('test', 0)} test, {data.num_classes} classes) for {r.epochs} epochs, "
        f"batch {r.batch_size}, {r.optimizer.kind} + {r.schedule.kind}; "
        f"{hw.describe()['device']}, {hw.policy}, jit {'on' if hw.jit else 'off'}, "
        f"distribute {hw.distribute} ({hw.replicas} replica{'s' if hw.replicas > 1 else ''}), "
        f"deterministic {'on' if hw.deterministic else 'off'} -> {run}"
    )


def summary(result: RunResult) -> str:
    m = result.metrics
    parts = [f"{m['epochs_done']} epochs"]
    for split in ("train", "val", "test"):
        if m.get(split) and "accuracy" in m[split]:
            parts.append(f"{split} accuracy {m[split]['accuracy']:.4f}")
    parts.append(f"{m['images_per_s']:.0f} images/s")
    return f"done: {', '.join(parts)} -> {result.run_dir}"


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


def compile_model(model: Any, spec: Any, hw, steps: int) -> None:
    """Compile the training model from the recipe (loss weights for auxiliary heads)."""
    r = spec.train
    outputs = _output_names(model)
    if outputs:
        weights = spec.loss_weights()
        model.compile(
            optimizer=recipe.optimizer(r, steps),
            loss={name: recipe.loss(r) for name in outputs},
            loss_weights={name: float(weights.get(name, 1.0)) for name in outputs},
            metrics={spec.output_name: recipe.metrics(r)},
            jit_compile=hw.jit,
        )
    else:
        model.compile(
            optimizer=recipe.optimizer(r, steps),
            loss=recipe.loss(r),
            metrics=recipe.metrics(r),
            jit_compile=hw.jit,
        )


def callbacks(
    spec: Any, run: Path, state: RunState, model: Any, hw, recipe_cbs: list[Any]
) -> list[Any]:
    """The run's callbacks, in the order Keras must call them (see callbacks.py).

    ``recipe_cbs``: ``recipe_callbacks(...)``, before the checkpoint that keeps their state.
    """
    import keras

    r = spec.train
    cbs: list[Any] = [
        LogNames(spec.output_name if _output_names(model) else None),
        NanGuard(state),
        Timer(state, r.batch_size),
        *recipe_cbs,
        Checkpoint(run / rundir.CHECKPOINTS, state, recipe_cbs),
    ]
    if hw.is_chief:
        cbs.append(History(run / rundir.HISTORY))
    if hw.is_chief and tensorboard_available():
        cbs.append(
            keras.callbacks.TensorBoard(str(run / rundir.LOGS), write_graph=False, profile_batch=0)
        )
    return cbs


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
                mode=_mode(es.monitor, es.mode),
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
                mode=_mode(p.monitor, "auto"),
            )
        )
    return cbs


def _mode(monitor: str, mode: str) -> str:
    """min for losses, max for the rest (accuracy, topK): our metrics say which way is better."""
    if mode != "auto":
        return mode
    return "min" if monitor.endswith("loss") else "max"


def tensorboard_available() -> bool:
    """TensorBoard logs need the ``tensorboard`` package (tf.summary's implementation)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def _fit(spec, data: Data, hw, run: Path, *, verbose, echo, started, extra=None) -> RunResult:
    import keras

    r = spec.train
    steps = recipe.steps_per_epoch(r, data.sizes["train"])
    with hw.strategy.scope():
        model = training_model(spec)
        compile_model(model, spec, hw, steps)
        # Keras wraps the optimizer for mixed_float16 (dynamic loss scaling): record the fact.
        hw.loss_scaling = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        try:  # a fresh run directory has no checkpoint: 0
            done = restore(model, run / rundir.CHECKPOINTS, run / rundir.HISTORY)
            recipe_cbs = recipe_callbacks(r, callback_states(run / rundir.CHECKPOINTS))
        except (OSError, ValueError) as exc:
            raise RunError(
                f"cannot restore the checkpoint in {run / rundir.CHECKPOINTS}: {exc}"
            ) from None
    if hw.jit and not model.jit_compile:  # Keras drops XLA silently (with a warning)
        echo(
            "note: Keras compiled without XLA (a layer without XLA support, or op determinism "
            "left on by an earlier run in this process)"
        )
        hw.jit = False
    labels = recipe.label_fn(r, data.num_classes, _output_names(model))
    train_ds = make_pipeline(
        data.train, r.batch_size, training=True, augment=r.augment, seed=r.seed, repeat=True,
        labels=labels,
    )  # fmt: skip
    # killed after early stopping ended the run, before model.keras: nothing more to train
    stopped = any(isinstance(cb, ResumableEarlyStopping) and cb.stopped() for cb in recipe_cbs)
    if done and not stopped:
        train_ds = replay(train_ds, min(done, r.epochs) * steps, echo)
    val_ds = (
        make_pipeline(data.val, r.batch_size, training=False, labels=labels)
        if data.val is not None
        else None
    )
    timing = checkpoint_record(run / rundir.CHECKPOINTS).get("timing")
    state = RunState.resumed(done, timing, r.epochs)
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    model.fit(
        train_ds,
        epochs=min(done, r.epochs) if stopped else r.epochs,
        initial_epoch=min(done, r.epochs),
        steps_per_epoch=steps,
        validation_data=val_ds,
        callbacks=[*callbacks(spec, run, state, model, hw, recipe_cbs), *(extra or [])],
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles (seeded)
    )
    history = rundir.read_history(run / rundir.HISTORY)
    if history:
        rundir.plot_curves(history, run / rundir.CURVES)

    if not state.last_logs and history:
        # Resumed a run that had already reached its epoch count: nothing was trained.
        state.last_logs = {k: v for k, v in history[-1].items() if k != "epoch"}
    metrics: dict[str, Any] = {
        "status": "completed",
        "epochs": r.epochs,
        "epochs_done": state.epochs_done,
        "resumed_from_epoch": state.first_epoch,
        "train": _split_metrics(state.last_logs, val=False),
        "val": {},
        "test": {},
        "images_per_s": state.images_per_second(),
        "train_time_s": sum(state.epoch_seconds),
        "wall_time_s": 0.0,
        "hardware": hw.describe(),
    }
    if state.nan is not None:
        metrics["status"] = "nan"
        metrics["nan"] = state.nan
        metrics["wall_time_s"] = time.time() - started
        rundir.write_json(run / rundir.METRICS, metrics)
        good = state.epochs_done
        kept = (
            f"the last good checkpoint (epoch {good}) is kept in {run / rundir.CHECKPOINTS}"
            if good
            else "no epoch finished, so there is no checkpoint"
        )
        raise RunError(
            f"training stopped: the loss became {state.nan['loss']} in epoch {state.nan['epoch']} "
            f"(batch {state.nan['batch']}); {kept}",
            hint="lower the learning rate (--set train.optimizer.lr=...) and continue with "
            f"--resume {run}",
        )
    if state.epochs_done < r.epochs and r.early_stopping is not None:
        metrics["status"] = "early_stopped"

    from ..build import inference_model

    infer = inference_model(model, spec)
    with hw.strategy.scope():
        infer.compile(loss=recipe.loss(r), metrics=recipe.metrics(r), jit_compile=hw.jit)
    metrics.update(evaluate_splits(infer, data, r))
    if hw.is_chief:
        # A fresh, uncompiled view of the same layers: model.keras carries no optimizer state.
        rundir.save_model(inference_model(model, spec), run / rundir.MODEL)
    metrics["wall_time_s"] = time.time() - started
    rundir.write_json(run / rundir.METRICS, metrics)
    return RunResult(run, metrics, history)


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


def evaluate_splits(model: Any, data: Data, r: Any) -> dict[str, dict[str, float]]:
    """The compiled ``model``'s metrics on the val and test splits that ``data`` has."""
    plain = recipe.label_fn(r, data.num_classes, None)
    out = {}
    for split in ("val", "test"):
        ds = getattr(data, split)
        if ds is not None:
            pipe = make_pipeline(ds, r.batch_size, training=False, labels=plain)
            # a progress bar (count, ETA) on a terminal: evaluating a big split takes a while
            logs = model.evaluate(pipe, verbose=int(sys.stdout.isatty()), return_dict=True)
            out[split] = {k: float(v) for k, v in logs.items()}
    return out


def _split_metrics(logs: dict[str, float], *, val: bool) -> dict[str, float]:
    """The train (or val_) entries of an epoch's logs, without the prefix."""
    out = {}
    for key, value in logs.items():
        if key == "lr":
            continue
        if val and key.startswith("val_"):
            out[key[4:]] = value
        elif not val and not key.startswith("val_"):
            out[key] = value
    return out
