"""The task checks of a spec, run with its shapes before TensorFlow (located, all at once).

For the main output (``task:``, ``train.loss``, ``train.metrics``) and every head with a task
of its own (``heads.<h>.task``, ``.loss``, ``.metrics``): the task's ``head_problems`` (its
final activation, units, loss) and its metric names.
"""

from __future__ import annotations

from typing import Any

from ..errors import Problem
from .base import OutputView
from .registry import get

#: Layers that pass their input's values through (the activation is found before them).
_PASS = ("dropout", "droppath")


def final_activation(graph: Any, name: str) -> tuple[str | None, int | None]:
    """(the activation, the dense units) of the layer that makes output ``name``."""
    node = graph.nodes[graph.resolve(name)]
    act: str | None = None
    while node.spec is not None and node.spec.kind_name in (*_PASS, "act"):
        if node.spec.kind_name == "act" and act is None:
            act = node.spec.fn
        node = graph.nodes[node.inputs[0]]
    if act is None and node.spec is not None:
        act = getattr(node.spec, "act", None)
    units = graph.num_classes(name)
    return (None if act in (None, "linear") else str(act)), units


def views(spec: Any, graph: Any) -> list[OutputView]:
    """The main output and every head with a task of its own, as the checks see them."""
    r = spec.train
    out = []
    if graph.output in graph.nodes:
        act, units = final_activation(graph, graph.output)
        shape = tuple(graph.nodes[graph.resolve(graph.output)].shape)
        out.append(
            OutputView(
                graph.output, (), shape, units, act, r.loss.kind, tuple(r.metrics),
                tuple(r.targets) if r.targets else None, tuple(spec.input),
            )
        )  # fmt: skip
    for hname, head in spec.heads.items():
        if not head.own or hname not in graph.heads:
            continue
        act, units = final_activation(graph, hname)
        shape = tuple(graph.nodes[graph.resolve(hname)].shape)
        loss = head.loss.kind if head.loss is not None else get(head.task).default_loss
        out.append(
            OutputView(
                hname, ("heads", hname), shape, units, act, loss, tuple(head.metrics or ()),
                tuple(head.label) if head.label else None, tuple(spec.input),
            )
        )  # fmt: skip
    return out


def _task_key(view: OutputView) -> tuple:
    return (*view.path, "task") if view.path else ("task",)


def _key_path(view: OutputView, key: str) -> tuple:
    if view.path:
        return (*view.path, key)
    return ("train", key) if key in ("loss", "metrics", "targets") else (key,)


def task_problems(spec: Any, graph: Any, ctx: Any) -> list[Problem]:
    """Every task problem of ``spec`` (its compiled ``graph``), located in the file."""
    found = []
    for view in views(spec, graph):
        task = get(spec.task if not view.path else spec.heads[view.name].task)
        found += loop_problems(spec, view, task.name, ctx)
        where = ".".join(str(p) for p in view.path) or "task"
        for issue in task.head_problems(view):
            path = _key_path(view, issue.key)
            found.append(Problem(_locate(ctx, path, view), issue.message, issue.hint, where))
        for metric in view.metrics:
            if not task.accepts_metric(metric):
                found.append(
                    Problem(
                        _locate(ctx, _key_path(view, "metrics"), view),
                        f"metric '{metric}' is not a {task.name} metric, received "
                        f"metrics={list(view.metrics)}",
                        f"use {task.metric_names()}",
                        where,
                    )
                )
    return found


#: The tasks the multi-worker step loop trains (cnnspec/train/multiworker.py): one loss on one
#: integer class per example and accuracy counted by hand; other tasks' targets, losses and
#: metrics (per-pixel, k-hot, standardised values) go through Keras' fit only.
MULTI_WORKER_TASKS = ("classification",)


def multi_worker(spec: Any) -> str | None:
    """Why the spec trains multi-worker (``distribute: multi_worker``, or ``auto`` with
    TF_CONFIG set, as cnnspec.train.hardware resolves it), or None."""
    import os

    dist = spec.train.distribute
    if dist == "multi_worker":
        return "train.distribute: multi_worker"
    if dist == "auto" and os.environ.get("TF_CONFIG", "").strip():
        return "TF_CONFIG is set (distribute: auto means multi_worker)"
    return None


def loop_problems(spec: Any, view: OutputView, task: str, ctx: Any) -> list[Problem]:
    """An output whose task the spec's training loop cannot train (refused before TensorFlow)."""
    why = multi_worker(spec)
    if why is None or task in MULTI_WORKER_TASKS:
        return []
    where = ".".join(str(p) for p in view.path) or "task"
    return [
        Problem(
            _locate(ctx, _task_key(view), view),
            f"{why}, and multi-worker training trains {', '.join(MULTI_WORKER_TASKS)} only; "
            f"{view.where} is {task}",
            "train it on one machine (distribute: none or mirrored, TF_CONFIG unset)",
            where,
        )
    ]


def _locate(ctx: Any, path: tuple, view: OutputView):
    """The location of ``path`` where it is written, else of the output's ``task:`` (a default
    loss is not written: the task that chose it is)."""
    positions = getattr(ctx.doc, "positions", {})
    for candidate in (path, _task_key(view)):
        if tuple(candidate) in positions or str(ctx.location(candidate).file).startswith("--set"):
            return ctx.location(candidate)
    return ctx.location(path)
