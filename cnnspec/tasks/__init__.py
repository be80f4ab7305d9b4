"""Tasks: what an output of a model learns (classification, multilabel, regression, ...).

``registry.get(name)`` gives the task object (``base.Task``); ``plan.outputs(spec, data)``
the typed per-output plan of a training run; ``checks.task_problems(spec, graph, ctx)`` the
located head checks run before TensorFlow. Importing this package never imports TensorFlow.
"""

from .base import HeadIssue, OutputPlan, OutputView, Task
from .registry import DEFAULT, accepted, get, names, tasks

__all__ = [
    "DEFAULT",
    "HeadIssue",
    "OutputPlan",
    "OutputView",
    "Task",
    "accepted",
    "get",
    "names",
    "tasks",
]
