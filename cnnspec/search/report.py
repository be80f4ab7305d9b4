"""What a search leaves behind: search.csv, best.yaml, plots and the table of top trials."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..outpaths import atomic_path, write_text_atomic
from .study import Plan, candidate, retried

CSV_NAME = "search.csv"
BEST_NAME = "best.yaml"
PLOTS = "plots"
COLUMNS = ["number", "state", "value", "params", "macs", "seconds", "note"]


def rows(plan: Plan, trials: list[Any]) -> list[dict[str, Any]]:
    """One row per trial: the columns of search.csv."""
    again = retried(trials)
    out = []
    for t in trials:
        note = t.user_attrs.get("note", "")
        if t.number in again:
            note = f"interrupted (its worker stopped); retried as trial {again[t.number]}"
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        row = {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.user_attrs.get("params"),
            "macs": t.user_attrs.get("macs"),
            "seconds": None if seconds is None else round(seconds, 2),
            "note": note,
        }
        row.update({p: t.params.get(p) for p in plan.paths})
        out.append(row)
    return out


def write_csv(plan: Plan, table: list[dict[str, Any]]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + plan.paths, lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return write_text_atomic(plan.out / CSV_NAME, buf.getvalue())


def best_trial(plan: Plan, trials: list[Any]) -> Any | None:
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if not done:
        return None
    pick = max if plan.search.maximize else min
    return pick(done, key=lambda t: t.value)


def write_best(plan: Plan, best: Any) -> Path:
    """The best trial's resolved spec (its values applied), ready for ``cnnspec train``."""
    spec = candidate(plan, dict(best.params))
    data = {k: v for k, v in spec.source_data.items() if k != "search"}
    sets = ", ".join(best.user_attrs.get("overrides", []))
    header = (
        f"# The best trial ({best.number}) of `cnnspec search {plan.spec_path}`: "
        f"{plan.search.objective} = {best.value:.6g}\n# values: {sets}\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return write_text_atomic(plan.out / BEST_NAME, text)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


@dataclass
class ObjectiveSeries:
    """The points of the objective plot, each (trial number, objective)."""

    complete: list[tuple[int, float]]
    best: list[tuple[int, float]]  # the best so far, at each complete trial
    #: Trials the pruner stopped after training some epochs, at their last reported value.
    #: A trial pruned before training (invalid, over budget) has no value and is left out.
    pruned: list[tuple[int, float]]


def objective_series(plan: Plan, trials: list[Any]) -> ObjectiveSeries:
    """What the objective plot draws (pure data: tested without drawing)."""
    complete = [
        (t.number, float(t.value))
        for t in trials
        if t.state.name == "COMPLETE" and t.value is not None
    ]
    best, running = [], None
    for number, v in complete:
        if running is None or (v > running if plan.search.maximize else v < running):
            running = v
        best.append((number, running))
    pruned = [
        (t.number, float(t.intermediate_values[max(t.intermediate_values)]))
        for t in trials
        if t.state.name == "PRUNED" and t.intermediate_values
    ]
    return ObjectiveSeries(complete, best, pruned)


def plot(plan: Plan, study: Any, table: list[dict[str, Any]]) -> list[Path]:
    """Objective over trials, parameter importances, objective against params and MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = plan.out / PLOTS
    written = []
    objective = plan.search.objective
    done = [r for r in table if r["state"] == "COMPLETE" and r["value"] is not None]
    if not done:
        return written

    series = objective_series(plan, study.get_trials(deepcopy=False))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(*zip(*series.complete, strict=True), label="complete")
    ax.step(*zip(*series.best, strict=True), where="post", color="C1", label="best so far")
    if series.pruned:
        ax.scatter(
            *zip(*series.pruned, strict=True),
            marker="x",
            color="gray",
            label="pruned (its last epoch)",
        )
    ax.set(xlabel="trial", ylabel=objective, title="objective over trials")
    ax.legend()
    _save(fig, out / "objective.png")
    written.append(out / "objective.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs")):
        pts = [(r[key], r["value"]) for r in done if r[key]]
        if pts:
            ax.scatter(*zip(*pts, strict=True))
            ax.set_xscale("log")
        ax.set(xlabel=label, title=f"{objective} against {label}")
    axes[0].set_ylabel(objective)
    _save(fig, out / "cost.png")
    written.append(out / "cost.png")

    if len(done) >= 2:
        import optuna

        try:
            importances = optuna.importance.get_param_importances(study)
        except (ValueError, RuntimeError):  # e.g. every trial drew the same values
            importances = {}
        if importances:
            fig, ax = plt.subplots(figsize=(7, 0.6 * len(importances) + 1.5))
            names = list(importances)[::-1]
            ax.barh(names, [importances[n] for n in names])
            ax.set(xlabel="importance (fANOVA)", title=f"what mattered for {objective}")
            _save(fig, out / "importances.png")
            written.append(out / "importances.png")
    return written


def top_table(plan: Plan, table: list[dict[str, Any]], n: int = 10) -> Any:
    """A Rich table of the best ``n`` complete trials."""
    from rich.table import Table

    done = [r for r in table if r["state"] == "COMPLETE" and r["value"] is not None]
    done.sort(key=lambda r: r["value"], reverse=plan.search.maximize)
    t = Table(title=f"top trials by {plan.search.objective}", header_style="bold")
    for col in ["trial", plan.search.objective, "params", "MACs", "seconds", *plan.paths]:
        searched = col in plan.paths
        t.add_column(col, justify="left" if searched else "right", overflow="fold", no_wrap=True)
    for r in done[:n]:
        t.add_row(
            str(r["number"]),
            f"{r['value']:.4f}",
            f"{r['params']:,}" if r["params"] is not None else "",
            f"{r['macs']:,}" if r["macs"] is not None else "",
            f"{r['seconds']:.1f}" if r["seconds"] is not None else "",
            *(_fmt(r[p]) for p in plan.paths),
        )
    return t


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
