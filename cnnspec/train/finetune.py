"""Phase 2 of transfer learning: unfreeze part of the backbone, recompile with a lower lr, continue.

Phase 1 is an ordinary ``cnnspec train`` run (the backbone is built frozen). When the spec has
``backbone.fine_tune``, the trainer calls :func:`fine_tune_run` afterwards (a phase of
training, so it lives beside the trainer; ``cnnspec.transfer`` keeps features and classifiers).
It reloads the phase-1 model from the run directory, unfreezes the chosen layers (BatchNormalization stays
frozen, i.e. in inference mode), recompiles with ``fine_tune.lr`` (constant) and trains
``fine_tune.epochs`` more epochs. Files it adds to the run directory::

    model_phase1.keras    the model after phase 1 (model.keras becomes the fine-tuned one)
    history_phase2.csv    one row per phase-2 epoch (history.csv stays phase 1's; curves.png
                          shows both phases, phase 2's epochs numbered on)
    metrics.json          gains "phase1" (the phase-1 val/test metrics) and "phase2"
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..data import make_pipeline
from ..errors import RunError
from ..tasks.plan import needs_table
from . import lifecycle, rundir
from . import recipe as recipes
from .callbacks import History, LogNames, NanGuard, RunState, Timer
from .trainer import compile_model

HISTORY_PHASE2 = "history_phase2.csv"
MODEL_PHASE1 = "model_phase1.keras"
BACKBONE = "backbone"


def unfreeze(model: Any, spec: Any) -> list[str]:
    """Unfreeze the layers ``spec.backbone.fine_tune`` chooses; returns their names.

    BatchNormalization layers among them stay frozen (inference mode, moving statistics fixed).
    """
    from ..build.backbone import set_trainable

    names = spec.backbone.unfrozen_in_phase2(tuple(spec.input))
    set_trainable(model.get_layer(BACKBONE), set(names))
    return names


def phase2_recipe(spec: Any) -> Any:
    """The train: recipe of phase 2: fine_tune.lr (constant schedule) for fine_tune.epochs."""
    from ..spec.train import ConstantSpec, ScheduleSpec

    ft = spec.backbone.fine_tune
    recipe = spec.train.model_copy(deep=True)
    recipe.optimizer.params.lr = ft.lr
    recipe.schedule = ScheduleSpec(constant=ConstantSpec())
    recipe.epochs = ft.epochs
    recipe.early_stopping = None
    return recipe


def phase2_spec(spec: Any) -> Any:
    """``spec`` with the phase-2 recipe (what the trainer's compile/fit helpers read)."""
    new = spec.model_copy(update={"train": phase2_recipe(spec)})
    new._graph = spec._graph
    new._source = spec._source
    new._file = spec._file
    return new


def fine_tune_run(session: Any, result: Any, *, verbose: int | None) -> Any:
    """Phase 2 on a finished phase-1 run; returns the updated RunResult."""
    import keras

    if result.metrics.get("status") == "nan":
        return result
    started = time.time()
    spec, hw, data, run = session.spec, session.hw, session.data, Path(session.run)
    spec2 = phase2_spec(spec)
    r = spec2.train
    model_path = run / rundir.MODEL
    with rundir.atomic_path(run / MODEL_PHASE1) as tmp:
        shutil.copyfile(model_path, tmp)
    with hw.strategy.scope():
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
        names = unfreeze(model, spec)
        # every output's task, loss and metrics, as phase 1 (a regression or multilabel head)
        plans = session.outputs if needs_table(spec) else None  # classification: as before
        compile_model(model, spec2, hw, session.steps, session.metric_names, plans)
    phase2 = replace(
        session, spec=spec2, model=model, steps=recipes.steps_per_epoch(r, data.sizes["train"])
    )
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    session.echo(
        f"phase 2: {spec.backbone.fine_tune.describe()}: {len(names)} backbone layers unfrozen, "
        f"{trainable:,} trainable parameters"
    )
    state = _fit_phase2(phase2, verbose)
    if state.nan is not None:
        raise RunError(
            f"fine-tuning stopped: the loss became {state.nan['loss']} in phase-2 epoch "
            f"{state.nan['epoch']}; the phase-1 model is kept in {run / MODEL_PHASE1}",
            hint="lower backbone.fine_tune.lr",
        )
    metrics = dict(result.metrics)
    metrics["phase1"] = {split: metrics.get(split, {}) for split in ("train", "val", "test")}
    scores, metrics["per_class"] = lifecycle.evaluate_splits(model, phase2)
    metrics.update(scores)
    metrics["train"] = {
        k: float(v) for k, v in state.last_logs.items() if k != "lr" and not k.startswith("val_")
    }
    metrics["phase2"] = {
        "unfrozen_layers": len(names),
        "first_unfrozen": names[0] if names else None,
        "trainable_params": trainable,
        "lr": spec.backbone.fine_tune.lr,
        "epochs": r.epochs,
        "epochs_done": state.epochs_done,
        "train_time_s": sum(state.epoch_seconds),
    }
    metrics["epochs_done"] = result.metrics.get("epochs_done", 0) + state.epochs_done
    metrics["wall_time_s"] = result.metrics.get("wall_time_s", 0.0) + time.time() - started
    history = rundir.read_history(run / HISTORY_PHASE2) if hw.is_chief else []
    if hw.is_chief:
        rundir.save_model(model, model_path)
        rundir.write_json(run / rundir.METRICS, metrics)
        rundir.plot_curves(both_phases(result.history, history), run / rundir.CURVES)
    return type(result)(run, metrics, both_phases(result.history, history))


def _fit_phase2(session: Any, verbose: int | None) -> RunState:
    """Train phase 2's epochs with ``fit`` (no checkpoints: a killed phase 2 starts again)."""
    import sys

    r, data = session.recipe, session.data
    heads = list(session.model.output) if isinstance(session.model.output, dict) else None
    if needs_table(session.spec):  # label-table tasks and task heads: each output's targets
        labels = recipes.targets_fn(session.outputs, heads)
    else:
        labels = recipes.label_fn(r, data.num_classes, None)
    train_ds = make_pipeline(data.train, r.batch_size, training=True, augment=r.augment,
                             seed=r.seed + 1, repeat=True, labels=labels,
                             reading=data.reading("train"))  # fmt: skip
    val_ds = (
        make_pipeline(data.val, r.batch_size, training=False, labels=labels)
        if data.val is not None
        else None
    )
    state = RunState()
    cbs = [LogNames(session.spec.output_name if heads else None), NanGuard(state),
           Timer(state, r.batch_size)]  # fmt: skip
    if session.hw.is_chief:
        cbs.append(History(session.run / HISTORY_PHASE2))
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 2
    session.model.fit(train_ds, epochs=r.epochs, steps_per_epoch=session.steps,
                      validation_data=val_ds, callbacks=cbs, verbose=verbose, shuffle=False)  # fmt: skip
    return state


def both_phases(phase1: list[dict], phase2: list[dict]) -> list[dict]:
    """The history of both phases in one, phase 2's epochs numbered on from phase 1's."""
    last = phase1[-1]["epoch"] if phase1 else 0
    return [*phase1, *({**row, "epoch": last + row["epoch"]} for row in phase2)]
