"""``cnnspec search``: check the plan, run the workers, report the results."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import RunError, SpecError
from ..spec import load_spec
from . import folder, report, storage
from .check import fingerprint, search_problems
from .storage import check_url, shown
from .study import LOCK_NAME, Plan, candidate, open_study, planned_count, work


def prepare(
    spec_path: Path,
    overrides: list[str],
    scale: str | None,
    *,
    trials: int | None = None,
    storage: str | None = None,
    out: Path | None = None,
) -> Plan:
    """Load the spec, check its ``search:`` section (objective, paths), the output folder and the
    storage, and return the plan.

    Everything is checked here, before any trial: a misspelt path would otherwise make every
    trial an invalid candidate. Nothing is created.
    """
    doc = yamlio.load(spec_path)
    spec = load_spec(spec_path, overrides, scale)
    s = spec.search
    if s is None:
        raise SpecError.single(
            "the spec has no search: section",
            location=doc.location(()),
            hint="add search: {trials: 20, space: {train.optimizer.adam.lr: "
            "{loguniform: [1.0e-4, 1.0e-2]}}}",
        )
    if trials is not None:
        s = s.model_copy(update={"trials": trials})
    problems = search_problems(spec_path, spec, list(overrides), scale, s)
    if problems:
        raise SpecError(problems)
    out = out or Path("searches") / spec.name
    plan = Plan(Path(spec_path), out, s, spec.name, list(overrides), scale, storage)
    plan.fingerprint = fingerprint(spec, s, scale)
    if storage is not None:
        check_url(storage)
    folder.check_out(out)
    if storage is None:
        check_url(plan.storage_url)
    return plan


def progress_line(plan: Plan, study: Any, trial: Any) -> str:
    """After a trial: what it gave, and where the search stands."""
    trials = study.get_trials(deepcopy=False)
    states = [t.state.name for t in trials]
    done = planned_count([t for t in trials if t.state.name != "RUNNING"])
    best = report.best_trial(plan, trials)
    what = ""
    if trial is not None:
        value = f" {plan.search.objective} {trial.value:.4f}" if trial.value is not None else ""
        note = trial.user_attrs.get("note", "")
        what = f"trial {trial.number} {trial.state.name}{value}" + (f" ({note})" if note else "")
    best_txt = f"best {best.value:.4f} (trial {best.number})" if best else "no complete trial yet"
    return (
        f"{what} | {done}/{plan.search.trials} done, {states.count('PRUNED')} pruned, "
        f"{states.count('FAIL')} failed, {best_txt}"
    )


def run(plan: Plan, workers: int, echo: Callable[[str], None], *, fresh: bool = False) -> None:
    """Run the search with ``workers`` processes (1: in this process); ``fresh``: start again.

    The folder, the storage's tables and the study are created here, once, before any worker
    starts (workers that created them together raced: "table studies already exists").
    """
    folder.claim(plan.out)
    if fresh:
        start_afresh(plan)
    study = open_study(plan)
    from ..track.search import open_parent

    open_parent(candidate(plan, {}), plan, study)  # a tracked search: its parent run, once
    echo(
        f"search {plan.name}: {plan.search.trials} trials of {len(plan.paths)} values, "
        f"objective {plan.search.objective} "
        f"({'max' if plan.search.maximize else 'min'}), storage {shown(plan.storage_url)}, "
        f"{workers} worker{'s' if workers > 1 else ''}, trials in {plan.out / 'trials'}"
    )
    if workers == 1:
        work(plan, lambda study, trial: echo(progress_line(plan, study, trial)))
        return
    procs = [subprocess.Popen(worker_command(plan, i)) for i in range(workers)]
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        # Ctrl-C reached the workers too: each stops its trial at the next batch and records
        # it for a retry. One that does not within a minute is ended (its heartbeat goes stale).
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.terminate()
        raise
    except BaseException:
        for p in procs:
            p.terminate()
        raise
    if any(codes):
        # The others may have finished the plan: their results are still written (by finish).
        raise WorkerFailed(codes)


def start_afresh(plan: Plan) -> None:
    """``--fresh``: delete this search's study from the storage and its results from its folder."""
    import optuna

    def delete() -> None:
        with storage.locked(plan.out / LOCK_NAME):
            rdb = optuna.storages.RDBStorage(
                plan.storage_url, engine_kwargs=storage.engine_kwargs(plan.storage_url)
            )
            with contextlib.suppress(KeyError):  # no such study yet
                optuna.delete_study(study_name=plan.name, storage=rdb)

    storage.retrying(plan.storage_url, delete)
    folder.clear(plan.out)


class WorkerFailed(RunError):
    """A worker process exited with an error (it printed its own one-line reason)."""

    def __init__(self, codes: list[int]) -> None:
        super().__init__(
            f"a search worker failed (exit codes {codes}); the results so far are written",
            "run the same command again to finish the plan (the search resumes)",
        )


def worker_command(plan: Plan, index: int) -> list[str]:
    cmd = [sys.executable, "-m", "cnnspec.cli", "search", str(plan.spec_path), "--out"]
    cmd += [str(plan.out), "--trials", str(plan.search.trials), "--worker", str(index)]
    if plan.storage:
        cmd += ["--storage", plan.storage]
    if plan.scale:
        cmd += ["--scale", plan.scale]
    for text in plan.overrides:
        cmd += ["--set", text]
    return cmd


def worker(plan: Plan, index: int, echo: Callable[[str], None]) -> None:
    """One of several worker processes (``--worker N``): trials only, no report."""
    work(
        plan,
        lambda study, trial: echo(f"[worker {index}] " + progress_line(plan, study, trial)),
        seed_offset=1000 * index,
    )


def finish(plan: Plan, console: Any) -> dict[str, Any]:
    """Write search.csv, best.yaml and the plots; print the table of top trials.

    Raises RunError (exit 1) after writing them when no trial completed.
    """
    study = open_study(plan)
    trials = study.get_trials(deepcopy=False)
    table = report.rows(plan, trials)
    written = [report.write_csv(plan, table)]
    best = report.best_trial(plan, trials)
    if best is not None:
        written.append(report.write_best(plan, best))
    written += report.plot(plan, study, table)
    console.print(report.top_table(plan, table))
    states = [r["state"] for r in table]
    summary = {s: states.count(s) for s in ("COMPLETE", "PRUNED", "FAIL")}
    console.print(
        f"{len(table)} trials: {summary['COMPLETE']} complete, {summary['PRUNED']} pruned, "
        f"{summary['FAIL']} failed"
        + (f"; best {plan.search.objective} {best.value:.4f} (trial {best.number})" if best else "")
    )
    for path in written:
        console.print(f"wrote {path}", highlight=False)
    from ..track.search import close_parent

    close_parent(study, best, plan.search.objective, written)
    if best is None:
        raise nothing_succeeded(plan, table)
    console.print(f"train it: cnnspec train {plan.out / report.BEST_NAME}", highlight=False)
    return {"best": best, "rows": table, "written": written, "pid": os.getpid()}


def nothing_succeeded(plan: Plan, table: list[dict[str, Any]]) -> RunError:
    """The error of a search in which no trial completed, with the first trial's reason."""
    first = next((r for r in table if r["note"]), None)
    why = f"; trial {first['number']}: {first['note'][:300]}" if first else ""
    return RunError(
        f"no trial of the search completed ({len(table)} trial(s) in "
        f"{plan.out / report.CSV_NAME}){why}",
        "the note column of search.csv says why each trial failed or was pruned "
        "(a budget too tight, a bad space, a data error)",
    )
