"""The names a training run logs, and which way each is better: what early stopping, the
plateau schedule and a search objective may monitor.

Keras logs ``loss`` and the main output's metrics (``accuracy``, ``f1``, ``mae``, ...). A model
with heads logs every output's loss as ``<output>_loss`` and every metric as
``<output>_<metric>`` (``count_mae``); the run also keeps the main output's metrics under
their plain names (``callbacks.LogNames``). Each has its ``val_`` form. The direction of a
metric is its task's (``Task.monitor_mode``: max for accuracy/f1/map/r2/mean_iou, min for
mae/rmse), a loss is minimised. Pure: no TensorFlow.
"""

from __future__ import annotations

from typing import Any

from ..errors import Problem, did_you_mean
from ..tasks.registry import get


def logged(spec: Any, graph: Any) -> dict[str, str]:
    """Every name the run of ``spec`` logs -> ``"min"`` or ``"max"``, in the order Keras
    prints them (train names, then their ``val_`` forms)."""
    r = spec.train
    task = get(spec.task)
    outputs = [graph.output, *graph.heads]
    names = {"loss": "min"}
    main = {m: task.monitor_mode(m) for m in r.metrics}
    if len(outputs) == 1:
        names.update(main)
    else:
        names.update({f"{o}_loss": "min" for o in outputs})
        names.update({f"{graph.output}_{m}": mode for m, mode in main.items()})
        names.update(main)
        for hname, head in spec.task_heads.items():
            head_task = get(head.task)
            names.update({f"{hname}_{m}": head_task.monitor_mode(m) for m in head.metrics or ()})
    return {**names, **{f"val_{n}": mode for n, mode in names.items()}}


def monitor_problems(spec: Any, graph: Any, where: Any) -> list[Problem]:
    """Early stopping / plateau must monitor a name the run logs, or they never act.

    ``where``: a path in the spec (``("train", "early_stopping", "monitor")``) -> its Location.
    """
    known = logged(spec, graph)
    found = []
    for path, name in spec.train.monitors().items():
        if name not in known:
            found.append(unknown_name(name, "monitor", known, where(("train", *path)),
                                      "train." + ".".join(path[:-1])))  # fmt: skip
    return found


def unknown_name(name: str, key: str, known: dict[str, str], location: Any, ctx: str) -> Problem:
    """'<name>' is not logged: located, with a 'did you mean' over the logged names."""
    return Problem(
        location,
        f"'{name}' is not a metric this recipe logs, received {key}={name}",
        did_you_mean(name, list(known)) or f"one of {', '.join(known)}",
        ctx,
    )


def resolve_modes(spec: Any, graph: Any) -> None:
    """Record on ``spec`` which way each monitored name is better (``TrainSpec.monitor_mode``,
    ``SearchSpec.maximize``), so the run side needs no task lookup of its own."""
    known = logged(spec, graph)
    spec.train.set_monitor_modes(known)
    if spec.search is not None:
        spec.search.set_objective_mode(known.get(spec.search.objective))
