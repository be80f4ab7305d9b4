"""``cnnspec search``: check the plan, run the workers, report the results."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import yamlio
from ..errors import Problem, RunError, SpecError
from ..spec import load_spec
from ..spec.search import IntSpec, LogUniformSpec, UniformSpec, override_text
from . import report
from .study import Plan, open_study, planned_count, work


def _sample(dim: Any) -> Any:
    """A value of ``dim`` to check its path with."""
    if isinstance(dim, LogUniformSpec):
        return dim.loguniform[0]
    if isinstance(dim, UniformSpec):
        return dim.uniform[0]
    if isinstance(dim, IntSpec):
        return dim.int_[0]
    return dim[0]


def prepare(
    spec_path: Path,
    overrides: list[str],
    scale: str | None,
    *,
    trials: int | None = None,
    storage: str | None = None,
    out: Path | None = None,
) -> Plan:
    """Load the spec, check its ``search:`` section (objective, paths) and return the plan.

    Everything is checked here, before any trial: a misspelt path would otherwise make every
    trial an invalid candidate.
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
    problems = []
    known = spec.train.monitor_names([spec.graph.output, *spec.graph.heads])
    if s.objective not in known:
        problems.append(
            Problem(
                doc.location(("search", "objective")),
                f"'{s.objective}' is not a metric this recipe logs, received objective={s.objective}",
                f"one of {', '.join(known)}",
                "search",
            )
        )
    for path, dim in s.space.items():
        text = override_text(path, _sample(dim))
        try:
            load_spec(spec_path, [*overrides, text], scale)
        except SpecError as exc:
            mine = [p for p in exc.problems if p.location.file.startswith("--set")]
            if mine:
                problems.append(
                    Problem(
                        doc.location(("search", "space", path)),
                        f"'{path}' is not a value of this spec: {mine[0].message}",
                        mine[0].hint or "use a path that --set accepts, e.g. train.batch_size",
                        "search.space",
                    )
                )
    if problems:
        raise SpecError(problems)
    out = out or Path("searches") / spec.name
    return Plan(Path(spec_path), out, s, spec.name, list(overrides), scale, storage)


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


def run(plan: Plan, workers: int, echo: Callable[[str], None]) -> None:
    """Run the search with ``workers`` processes (1: in this process)."""
    plan.out.mkdir(parents=True, exist_ok=True)
    echo(
        f"search {plan.name}: {plan.search.trials} trials of {len(plan.paths)} values, "
        f"objective {plan.search.objective} "
        f"({'max' if plan.search.maximize else 'min'}), storage {plan.storage_url}, "
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
        raise RunError(f"a search worker failed (exit codes {codes})")


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
    """Write search.csv, best.yaml and the plots; print the table of top trials."""
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
    if best is not None:
        console.print(f"train it: cnnspec train {plan.out / report.BEST_NAME}", highlight=False)
    return {"best": best, "rows": table, "written": written, "pid": os.getpid()}
