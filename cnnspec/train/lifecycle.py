"""The life of a training run, shared by both loops: prepare -> restore -> epochs -> finish.

The Keras-``fit`` loop (``trainer.py``) and the multi-worker step loop (``multiworker.py``)
differ only in how one epoch is trained. Everything around it is here, once:

- ``prepare``: the model is built first (a missing ImageNet file fails before any data is
  read), then the data, the run directory and the recipe's metrics for this data;
- ``restore``: the last committed checkpoint (weights, optimizer, callbacks' state, timing);
- ``epoch_callbacks``: the per-epoch bookkeeping (lr, NaN guard, timing, checkpoint,
  history.csv) that ``fit`` calls and the step loop drives by hand;
- ``finish``: the end-of-run evaluation, metrics.json (one function, ``run_metrics``), the
  per-class report, model.keras and curves.png.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Data, decode_crop, load_data, make_pipeline
from ..errors import RunError
from ..tasks import plan as task_plan
from . import recipe, rundir
from .callbacks import RunState
from .checkpoints import (
    callback_states,
    check_outputs_unchanged,
    checkpoint_record,
    restore_checkpoint,
)
from .report import class_report, describe_report

Echo = Callable[[str], None]


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Session:
    """One session of a run (a resume is a new session of the same run)."""

    spec: Any
    hw: Any
    data: Data
    run: Path
    model: Any  # the training model, built in the strategy's scope
    steps: int  # per epoch
    metric_names: list[str]  # the recipe's metrics that mean something for this data
    skipped_metrics: list[str]
    started: float
    echo: Echo
    init: dict[str, Any] | None = None  # the transfer table of init: (issue 17), for metrics.json
    outputs: list[Any] = field(default_factory=list)  # OutputPlan per output (cnnspec.tasks)

    @property
    def recipe(self) -> Any:
        return self.spec.train


@dataclass
class Restored:
    """What the checkpoint gave back (nothing for a fresh run)."""

    epochs_done: int = 0
    callback_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    timing: dict[str, Any] | None = None


# --- prepare -------------------------------------------------------------------------------------


def prepare(
    spec: Any,
    hw: Any,
    *,
    run_dir,
    resume: bool,
    echo: Echo,
    started: float,
    data: Data | None = None,
) -> Session:
    """Build the model, load the data (unless ``data`` is given: already loaded, e.g. arrays
    from the Python API), create (or reuse) the run directory."""
    from .trainer import training_model

    with hw.strategy.scope():  # first: a backbone's missing weights cost no data loading
        model = training_model(spec)
        init = None if resume else apply_init(model, spec, echo if hw.is_chief else None)
    if data is None:
        data = load_training_data(spec, echo=echo if hw.is_chief else None)
    plans = task_plan.outputs(spec, data)  # RunError when the labels do not fit an output
    if hw.is_chief:
        run = prepare_run_dir(spec, data, hw, run_dir, resume, plans)
    else:  # only the chief writes the run; the others' files are removed at the end
        run = Path(tempfile.mkdtemp(prefix=f"cnnspec-worker{hw.worker_index}-"))
    names = plans[0].metrics
    skipped = [m if i == 0 else f"{p.name}_{m}" for i, p in enumerate(plans) for m in p.skipped]
    for plan in (p for p in plans if p.skipped):
        where = "" if plan is plans[0] else f" (head '{plan.name}')"
        echo(
            f"note: {', '.join(plan.skipped)} left out{where}: with {len(plan.classes)} classes "
            "top-k is 1.0 whenever k >= the number of classes"
        )
    steps = recipe.steps_per_epoch(spec.train, data.sizes["train"])
    return Session(spec, hw, data, run, model, steps, names, skipped, started, echo, init, plans)


def apply_init(model: Any, spec: Any, echo: Echo | None) -> dict[str, Any] | None:
    """Load the spec's init: weights (before restore/fit); the transfer table as a dict."""
    if spec.init is None:
        return None
    from ..init import apply
    from ..init.report import plain_lines

    table = apply(model, spec)  # RunError (exit 1) under min_loaded, before any data is read
    if echo is not None:
        for line in plain_lines(table):
            echo(line)
    return table.as_dict()


def load_training_data(spec: Any, echo: Echo | None = None, source: Any = None) -> Data:
    """The recipe's data (or ``source``: any data source, arrays in memory included), converted
    to the spec's input, split and checked against its classes as the recipe says."""
    r = spec.train
    return load_data(
        r.data if source is None else source,
        spec.input,
        seed=r.seed,
        validation_split=r.validation_split,
        test_split=r.test_split,
        num_classes=spec.num_classes,
        cache=r.cache,
        crop=decode_crop(r.augment),
        echo=echo,
        table=task_plan.needs_table(spec),
    )


def prepare_run_dir(
    spec: Any, data: Data, hw: Any, run_dir, resume: bool, plans: list[Any] | None = None
) -> Path:
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
        written = meta(spec, data, hw, plans)
        if resume:  # the weights learned the first session's targets (regression mean/std)
            check_outputs_unchanged(run / rundir.META, written.get("outputs") or [])
        rundir.write_json(run / rundir.META, written)
    return run


def meta(spec: Any, data: Data, hw: Any, plans: list[Any] | None = None) -> dict[str, Any]:
    """meta.json: what export/predict need to use model.keras without the spec."""
    tasks = {}
    if plans and (spec.task != "classification" or spec.task_heads or data.columns):
        # every output's task, classes and target statistics (predict prints the data's units)
        tasks = {"task": spec.task, "outputs": task_plan.describe_outputs(plans or [])}
    return {
        **tasks,
        "name": spec.name,
        "input_shape": list(spec.input),
        "class_names": list(data.class_names),
        "num_classes": data.num_classes,
        "preprocess": spec.preprocess,
        "output_name": spec.output_name,
        "heads": list(spec.heads),
        "data": data.source or spec.train.data,  # arrays in memory: what they were
        "input": "float32 pixels in [0, 255], channels-last; the model rescales",
        "hardware": hw.describe(),
        "versions": rundir.versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- restore -------------------------------------------------------------------------------------


def restore(session: Session) -> Restored:
    """The last committed checkpoint of the run, loaded into the session's model."""
    folder = session.run / rundir.CHECKPOINTS
    done = restore_checkpoint(session.model, folder, session.run / rundir.HISTORY)
    if not done:
        return Restored()
    try:
        states = callback_states(folder)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot read the early-stopping state in {folder}: {exc}") from None
    return Restored(done, states, checkpoint_record(folder).get("timing"))


# --- epochs ----------------------------------------------------------------------------------------


def epoch_callbacks(
    session: Session,
    state: RunState,
    recipe_cbs: list[Any],
    output_name: str | None,
    extra: list[Any] | None = None,
) -> list[Any]:
    """The per-epoch bookkeeping, in the order it must run (see callbacks.py).

    ``recipe_cbs``: early stopping / plateau, before the checkpoint that keeps their state.
    ``output_name``: the main output's name when the model has auxiliary heads.
    ``extra``: callbacks that see each finished epoch after history.csv has it (tracking, a
    caller's own), on the chief only: one worker reports the run, as one writes its folder.
    """
    from .callbacks import Checkpoint, History, LogNames, NanGuard, Timer

    cbs: list[Any] = [
        LogNames(output_name),
        NanGuard(state),
        Timer(state, session.recipe.batch_size),
        *recipe_cbs,
    ]
    if session.hw.is_chief:
        cbs.append(Checkpoint(session.run / rundir.CHECKPOINTS, state, recipe_cbs))
        cbs.append(History(session.run / rundir.HISTORY))
        cbs += extra or []
    return cbs


def start_state(session: Session, restored: Restored) -> RunState:
    """The run's state at the start of this session (resumed timing included)."""
    return RunState.resumed(restored.epochs_done, restored.timing, session.recipe.epochs)


# --- finish ---------------------------------------------------------------------------------------


def split_stats(model: Any, session: Session) -> Callable[[Any, Any], Any]:
    """A local tf.function: a batch's summed loss, summed metric hits, count and predictions."""
    import tensorflow as tf

    r = session.recipe
    loss_fn = recipe.loss(r, reduction=None)
    hits = recipe.metric_hits(session.metric_names)
    classes = session.data.num_classes

    @tf.function
    def stats(x, y):
        out = model(x, training=False)
        probs = tf.cast(next(iter(out.values())) if isinstance(out, dict) else out, tf.float32)
        truth = tf.cast(y, tf.int64)
        target = tf.one_hot(truth, classes) if r.loss.one_hot else truth
        sums = [tf.reduce_sum(tf.cast(loss_fn(target, probs), tf.float32))]
        sums += [tf.reduce_sum(h(probs, truth)) for h in hits]
        return sums, tf.cast(tf.shape(x)[0], tf.float32), tf.argmax(probs, axis=-1)

    return stats


def evaluate_split(stats: Callable, ds: Any, session: Session) -> tuple[dict, np.ndarray]:
    """(loss and metrics, confusion matrix) of a split, computed on this process."""
    classes = session.data.num_classes
    confusion = np.zeros((classes, classes), np.int64)
    totals = np.zeros(1 + len(session.metric_names))
    count = 0.0
    for x, y in make_pipeline(ds, session.recipe.batch_size, training=False):
        sums, n, pred = stats(x, y)
        totals += [float(s) for s in sums]
        count += float(n)
        np.add.at(confusion, (np.asarray(y), np.asarray(pred)), 1)
    values = totals / max(count, 1.0)
    return dict(zip(["loss", *session.metric_names], map(float, values), strict=True)), confusion


def evaluate_splits(model: Any, session: Session) -> tuple[dict[str, dict], dict[str, Any]]:
    """Metrics of the val and test splits, and the per-class report of the test split (else
    val)."""
    from ..tasks import scoring

    if not scoring.plain(session):  # multilabel, regression, heads of their own
        return scoring.evaluate_outputs(model, session)
    stats = split_stats(model, session)
    scores: dict[str, dict] = {"val": {}, "test": {}}
    report: dict[str, Any] = {}
    for split in ("val", "test"):
        ds = getattr(session.data, split)
        if ds is not None:
            scores[split], confusion = evaluate_split(stats, ds, session)
            report = class_report(confusion, session.data.class_names, split)
    return scores, report


def run_metrics(session: Session, state: RunState, status: str) -> dict[str, Any]:
    """metrics.json of the run so far: the one place both loops' results are made."""
    r = session.recipe
    return {
        "status": status,
        "epochs": r.epochs,
        "epochs_done": state.epochs_done,
        "resumed_from_epoch": state.first_epoch,
        "metrics": list(session.metric_names),
        "skipped_metrics": list(session.skipped_metrics),
        "train": {k: v for k, v in state.last_logs.items() if k != "lr" and k[:4] != "val_"},
        "val": {},
        "test": {},
        "per_class": {},
        "images_per_s": state.images_per_second(),
        "train_time_s": sum(state.epoch_seconds),
        "wall_time_s": time.time() - session.started,
        "hardware": session.hw.describe(),
        **({"init": session.init} if session.init is not None else {}),
    }


def finish(session: Session, state: RunState, *, stop_nan: bool = True) -> RunResult:
    """End the run: evaluate, write model.keras, metrics.json and curves.png (the chief)."""
    from ..build import inference_model

    spec, hw, run = session.spec, session.hw, session.run
    history = rundir.read_history(run / rundir.HISTORY) if hw.is_chief else []
    if history:
        rundir.plot_curves(history, run / rundir.CURVES)
    if not state.last_logs and history:
        # Resumed a run that had already reached its epoch count: nothing was trained.
        state.last_logs = {k: v for k, v in history[-1].items() if k != "epoch"}
    early = spec.train.early_stopping is not None and state.epochs_done < spec.train.epochs
    metrics = run_metrics(session, state, "early_stopped" if early else "completed")
    if state.nan is not None:
        metrics.update(status="nan", nan=state.nan)
        if hw.is_chief:
            rundir.write_json(run / rundir.METRICS, metrics)
        raise nan_error(state, run)
    infer = inference_model(session.model, spec)
    scores, metrics["per_class"] = evaluate_splits(infer, session)
    metrics.update(scores)
    metrics["wall_time_s"] = time.time() - session.started
    if hw.is_chief:
        rundir.save_model(infer, run / rundir.MODEL)
        rundir.write_json(run / rundir.METRICS, metrics)
    else:
        shutil.rmtree(run, ignore_errors=True)
    return RunResult(run, metrics, history)


def nan_error(state: RunState, run: Path) -> RunError:
    good = state.epochs_done
    kept = (
        f"the last good checkpoint (epoch {good}) is kept in {run / rundir.CHECKPOINTS}"
        if good
        else "no epoch finished, so there is no checkpoint"
    )
    return RunError(
        f"training stopped: the loss became {state.nan['loss']} in epoch {state.nan['epoch']} "
        f"(batch {state.nan['batch']}); {kept}",
        hint=f"lower the learning rate (--set train.optimizer.lr=...) and continue with --resume {run}",
    )


def summary(result: RunResult) -> str:
    """The end-of-run lines: scores, the per-class report, and where the files went."""
    m, run = result.metrics, result.run_dir
    parts = [f"{m['epochs_done']} epochs"]
    names = m.get("metrics") or ["accuracy"]
    first = "accuracy" if "accuracy" in names else names[0]
    for split in ("train", "val", "test"):
        if m.get(split) and first in m[split]:
            parts.append(f"{split} {first} {m[split][first]:.4f}")
    parts.append(f"{m['images_per_s']:.0f} images/s")
    lines = [f"done: {', '.join(parts)} -> {run}"]
    report = m.get("per_class") or {}
    if "outputs" in report:
        from ..tasks.scoring import describe

        lines += describe(report)
    else:
        lines += describe_report(report)
    lines.append(f"files: {run}/ (model: {run / rundir.MODEL}, metrics: {run / rundir.METRICS})")
    return "\n".join(lines)
