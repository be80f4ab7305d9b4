"""The registry of tasks: one module per task, each defining ``TASK``.

Adding a task: a module beside this one (its names, checks, Keras parts, scores, evaluate
report and predict records; see ``base.Task``), one line in ``tasks()``, and a sample in
``tests/test_tasks.py`` (which fails for a task without one). Messages and docs list the tasks
from here, never by hand.
"""

from __future__ import annotations

from functools import cache

from .base import Task

DEFAULT = "classification"


@cache
def tasks() -> dict[str, Task]:
    """Every task by name, in the order messages list them."""
    from . import classification, multilabel, regression, segmentation

    every = (classification.TASK, multilabel.TASK, regression.TASK, segmentation.TASK)
    return {t.name: t for t in every}


def names() -> list[str]:
    return list(tasks())


def get(name: str | None) -> Task:
    """The task called ``name`` (None: the default); KeyError for an unknown name."""
    return tasks()[name or DEFAULT]


def accepted() -> str:
    """'classification, multilabel or regression', for messages."""
    every = names()
    return ", ".join(every[:-1]) + " or " + every[-1] if len(every) > 1 else every[0]


def metric_known(name: str) -> bool:
    """Whether any task has a metric called ``name`` (the recipe's own check; the task's
    check is in ``head_problems``)."""
    return any(t.accepts_metric(name) for t in tasks().values())


def metrics_text() -> str:
    """Every task's metric names, for messages."""
    return "; ".join(f"{t.metric_names()} ({t.name})" for t in tasks().values())
