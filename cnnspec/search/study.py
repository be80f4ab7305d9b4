"""Run the trials of a search: Optuna study, storage, budget check, training, pruning.

Every worker process runs :func:`work` against the same study (SQLite in the output folder by
default, or any Optuna RDB URL such as ``postgresql://``). A worker takes the next trial under a
file lock in the output folder, so that K workers on one machine never start more trials than
planned; the trial is RUNNING in the storage before the lock is released.

A trial applies its values exactly as ``--set`` would (the loader's overrides), validates the
result and checks the budget from the pure shape inference: an invalid or over-budget candidate
is PRUNED with its reason and never reaches TensorFlow. A valid one trains by its recipe into
``DIR/trials/<number>/`` (an ordinary run directory), reporting the objective every epoch to
the pruner.

A worker killed (kill -9 included) stops sending heartbeats: after the grace period its trial
is marked FAIL and a copy with the same values is queued (Optuna's RetryHeartbeatStaleTrialCallback),
which the next worker to ask for a trial runs. The planned count excludes such retried trials,
so none is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ..errors import RunError, SpecError
from ..spec import ModelSpec, load_spec
from ..spec.memory import estimate_training_memory
from ..spec.search import IntSpec, LogUniformSpec, SearchSpec, UniformSpec, override_text
from . import storage

#: Seconds between a running trial's heartbeats; a trial silent for 3x this is taken as dead.
HEARTBEAT_ENV = "CNNSPEC_SEARCH_HEARTBEAT"
DB_NAME = "search.db"
LOCK_NAME = ".search.lock"
TRIALS = "trials"
#: The study's user attribute that records :func:`cnnspec.search.check.fingerprint`.
FINGERPRINT = "cnnspec_fingerprint"
MiB = 2**20


@dataclass
class Plan:
    """What every worker of one search needs to know."""

    spec_path: Path
    out: Path
    search: SearchSpec
    name: str
    overrides: list[str] = field(default_factory=list)  # --set given on the command line
    scale: str | None = None
    storage: str | None = None
    fingerprint: str = ""  # of what it searches (cnnspec.search.check.fingerprint)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out / DB_NAME).resolve()}"

    @property
    def paths(self) -> list[str]:
        return list(self.search.space)


def heartbeat_interval() -> int:
    raw = os.environ.get(HEARTBEAT_ENV, "5")
    try:
        value = int(raw)
    except ValueError:
        raise RunError(f"{HEARTBEAT_ENV} must be whole seconds, received {raw!r}") from None
    return max(value, 1)


def open_study(plan: Plan, seed_offset: int = 0) -> Any:
    """The study of ``plan`` (created on first use), with heartbeats and retries of dead trials.

    The tables and the study are created under the search folder's lock (the workers of one
    machine never race to create them) and retried when a process of another machine raced.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial says it all
    # Heartbeats and retries are "experimental" in Optuna 5 (since 2.8): we rely on them knowingly.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    interval = heartbeat_interval()
    s = plan.search
    # The median pruner judges from the 2nd epoch on: a slow starter keeps its second epoch.
    pruners = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1),
        "none": optuna.pruners.NopPruner,
    }
    direction = "maximize" if s.maximize else "minimize"

    def open_() -> Any:
        with storage.locked(plan.out / LOCK_NAME):
            rdb = optuna.storages.RDBStorage(
                plan.storage_url,
                heartbeat_interval=interval,
                grace_period=3 * interval,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                    max_retry=3
                ),
                engine_kwargs=storage.engine_kwargs(plan.storage_url),
            )
            study = optuna.create_study(
                storage=rdb,
                study_name=plan.name,
                pruner=pruners[s.pruner](),
                direction=direction,
                load_if_exists=True,
            )
            check_same_search(plan, study, direction)
            return study

    study = storage.retrying(plan.storage_url, open_)
    # Seeded by the trials so far and the worker: a resumed search or a second worker draws
    # new values instead of repeating the first ones.
    seed = s.seed + seed_offset + len(study.get_trials(deepcopy=False))
    study.sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, s.trials // 3)))
        if s.sampler == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    return study


def check_same_search(plan: Plan, study: Any, direction: str) -> None:
    """Refuse a study made by another search (another spec, space or objective) of this name."""
    if study.direction.name.lower() != direction:
        raise RunError(
            f"the study '{plan.name}' in {plan.storage_url} {study.direction.name.lower()}s, "
            f"but this search {direction}s {plan.search.objective}",
            "use another --out folder (or --storage) for a different objective",
        )
    if not plan.fingerprint:
        return
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:  # a new study (or one from a cnnspec that did not record it)
        study.set_user_attr(FINGERPRINT, plan.fingerprint)
    elif stored != plan.fingerprint:
        n = len(study.get_trials(deepcopy=False))
        raise RunError(
            f"the study '{plan.name}' in {storage.shown(plan.storage_url)} was made by another "
            f"search: the spec, its --set/--scale or its search space changed since its {n} "
            "trial(s), whose values would now be applied to a different model",
            f"search the edited spec in a new folder (--out {plan.out}-2; with a shared "
            "--storage, also another name:), start this one again with --fresh (deletes its "
            "trials), or put the spec back as it was to resume",
        )


# --- counting trials -----------------------------------------------------------------------------


def retried(trials: list[Any]) -> dict[int, int]:
    """{number of a dead trial: number of the trial that retries it}."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    out = {}
    for t in trials:
        original = RetryHeartbeatStaleTrialCallback.retried_trial_number(t)
        if original is None:
            original = t.user_attrs.get("retry_of")  # a trial stopped by Ctrl-C
        if original is not None:
            out[original] = t.number
    return out


def requeue_interrupted(study: Any, trials: list[Any]) -> None:
    """Queue a copy of every trial stopped by Ctrl-C (it is FAIL in the storage) not yet retried.

    A killed worker's trial is retried by its heartbeat going stale; an interrupted one
    finished as FAIL at once, so it is queued here, with the same values.
    """
    again = retried(trials)
    for t in trials:
        if t.state.name == "FAIL" and t.user_attrs.get("interrupted") and t.number not in again:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})


def planned_count(trials: list[Any]) -> int:
    """Trials that count toward the plan: all but the dead ones that a copy retries."""
    return len(trials) - len(retried(trials))


# --- one trial --------------------------------------------------------------------------------


def suggest(trial: Any, path: str, dim: Any) -> Any:
    """Draw the value of ``path`` for ``trial`` from its dimension."""
    if isinstance(dim, LogUniformSpec):
        return trial.suggest_float(path, *dim.loguniform, log=True)
    if isinstance(dim, UniformSpec):
        return trial.suggest_float(path, *dim.uniform, step=dim.step)
    if isinstance(dim, IntSpec):
        return trial.suggest_int(path, *dim.int_, step=dim.step, log=dim.log)
    return trial.suggest_categorical(path, dim)


def candidate(plan: Plan, values: dict[str, Any]) -> ModelSpec:
    """The spec of one trial: the values applied as --set, validated (raises SpecError)."""
    sets = [override_text(p, v) for p, v in values.items()]
    return load_spec(plan.spec_path, [*plan.overrides, *sets], plan.scale)


def over_budget(plan: Plan, spec: ModelSpec) -> tuple[dict[str, float], str]:
    """The candidate's costs, and why it is over the budget ('' when within)."""
    g = spec.graph
    memory = estimate_training_memory(spec, spec.train.batch_size)
    costs = {"params": g.total_params, "macs": g.total_macs, "memory_mb": memory.total / MiB}
    b = plan.search.budget
    limits = (("params", b.max_params), ("macs", b.max_macs), ("memory_mb", b.max_memory_mb))
    for key, limit in limits:
        if limit is not None and costs[key] > limit:
            return costs, f"over budget: {key} {costs[key]:,.6g} > max_{key} {limit:,.6g}"
    return costs, ""


def objective_value(result: Any, objective: str) -> float | None:
    """The trained run's objective: the final evaluation of its split, else its last epoch."""
    split, _, name = objective.partition("_")
    value = result.metrics.get(split, {}).get(name) if split in ("val", "test") else None
    if value is None and result.history:
        value = result.history[-1].get(objective)
    return None if value is None else float(value)


def pruning_callback(trial: Any, objective: str) -> Any:
    """A Keras callback that reports the objective every epoch and stops a weak trial."""
    import keras
    import optuna

    class Report(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            value = (logs or {}).get(objective)
            if value is None:
                return
            trial.report(float(value), epoch + 1)
            if trial.should_prune():
                note = f"stopped by the pruner after epoch {epoch + 1} ({objective} {value:.4g})"
                trial.set_user_attr("note", note)
                raise optuna.TrialPruned(note)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if _stop.requested:  # Ctrl-C: stop here, in Python, not inside a TensorFlow call
                raise KeyboardInterrupt

    return Report()


class _stop:  # noqa: N801 - a namespace for one flag
    """Set by the first Ctrl-C: the running trial stops at its next batch."""

    requested = False


def _on_sigint(signum: int, frame: Any) -> None:
    if _stop.requested:  # a second Ctrl-C: at once
        raise KeyboardInterrupt
    _stop.requested = True
    print("interrupted: stopping the trial after its current batch (Ctrl-C again: at once)")


@contextlib.contextmanager
def _graceful_interrupt() -> Iterator[None]:
    """A KeyboardInterrupt raised inside a TensorFlow call can surface as another error (or be
    lost); with this handler the first Ctrl-C is acted on between batches instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.requested = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_trial(plan: Plan, trial: Any, release: Callable[[], None]) -> float:
    """The objective function: build the candidate, check it, train it."""
    import optuna

    release()  # the trial is RUNNING in the storage: other workers may ask for the next one
    trial.set_user_attr("worker", os.getpid())
    values = {p: suggest(trial, p, dim) for p, dim in plan.search.space.items()}
    trial.set_user_attr("overrides", [override_text(p, v) for p, v in values.items()])
    try:
        spec = candidate(plan, values)
    except SpecError as exc:
        note = "invalid: " + "; ".join(str(p) for p in exc.problems)[:500]
        trial.set_user_attr("note", note)
        raise optuna.TrialPruned(note) from None
    costs, why = over_budget(plan, spec)
    for key, value in costs.items():
        trial.set_user_attr(key, value)
    if why:
        trial.set_user_attr("note", why)
        raise optuna.TrialPruned(why)
    run_dir = plan.out / TRIALS / str(trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    try:
        result = train_tracked(spec, trial, run_dir, plan.search.objective)
    except RunError as exc:
        if not _stop.requested:
            trial.set_user_attr("note", f"failed: {exc}"[:500])
            raise
        _interrupted(trial)
    except optuna.TrialPruned:
        raise
    except BaseException as exc:
        if not (_stop.requested or isinstance(exc, KeyboardInterrupt)):
            raise
        _interrupted(trial)
    value = objective_value(result, plan.search.objective)
    if value is None:
        trial.set_user_attr("note", f"the run logged no {plan.search.objective}")
        raise RunError(f"trial {trial.number}: the run logged no {plan.search.objective}")
    return value


def train_tracked(spec: ModelSpec, trial: Any, run_dir: Path, objective: str) -> Any:
    """Train one trial; when the recipe tracks, as a child run of the search's parent run."""
    from ..track import tracking
    from ..track.search import parent_run_id
    from ..train.trainer import train

    parent = parent_run_id(trial.study)
    with tracking(spec, run_name=f"trial {trial.number}", parent_run_id=parent) as tracker:
        result = train(
            spec,
            run_dir=run_dir,
            verbose=0,
            echo=lambda text: None,
            callbacks=[
                pruning_callback(trial, objective),
                *(tracker.callbacks() if tracker else []),
            ],
        )
        if tracker:
            tracker.finished(result)
    return result


def _interrupted(trial: Any) -> NoReturn:
    trial.set_user_attr("note", "interrupted (Ctrl-C)")
    trial.set_user_attr("interrupted", True)  # retried when the search goes on
    raise KeyboardInterrupt


def work(plan: Plan, progress: Callable[[Any, Any], None], seed_offset: int = 0) -> int:
    """Run trials until the plan is complete; returns how many this worker ran."""
    plan.out.mkdir(parents=True, exist_ok=True)
    study = open_study(plan, seed_offset)
    with _graceful_interrupt():
        return _work(plan, study, progress)


def _work(plan: Plan, study: Any, progress: Callable[[Any, Any], None]) -> int:
    import optuna

    ran = 0
    while True:
        if _stop.requested:
            raise KeyboardInterrupt
        with storage.locked(plan.out / LOCK_NAME) as release:
            optuna.storages.fail_stale_trials(study)
            requeue_interrupted(study, study.get_trials(deepcopy=False))
            trials = study.get_trials(deepcopy=False)
            # A retry queued by the stale check above (a killed worker's trial) is part of the
            # plan: the plan is done only when no such copy waits.
            waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
            if planned_count(trials) >= plan.search.trials and not waiting:
                release()
                running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
                if not running:
                    return ran
                time.sleep(heartbeat_interval())  # a dead worker's trial goes stale: retry it
                continue
            before = {t.number for t in trials}
            study.optimize(
                lambda trial, release=release: run_trial(plan, trial, release),
                n_trials=1,
                catch=(RunError,),
            )
        ran += 1
        mine = [t for t in study.get_trials(deepcopy=False) if t.number not in before]
        progress(study, mine[0] if mine else None)
