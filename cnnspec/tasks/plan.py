"""The outputs of a training run: which task, loss, metrics and label columns each one has.

A data source yields either one integer class index per example (``Data.columns`` empty:
class folders, ``path,label`` manifests, integer ``.npz``) or a label table: a float vector
per example whose columns ``Data.columns`` names (multilabel k-hot rows, regression targets,
a class column beside a count). Each output takes its columns: the main output
``train.targets`` (default: every column), a head ``heads.<h>.label``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import RunError
from .base import OutputPlan, Task, column_indices
from .registry import DEFAULT, get


def outputs(spec: Any, data: Any) -> list[OutputPlan]:
    """The main output's plan, then one per head with a task of its own; RunError (exit 1)
    when the data's labels do not fit an output (missing column, class count, format)."""
    r = spec.train
    graph = spec.graph
    plans = [
        _plan(spec.output_name, get(spec.task), r.loss, 1.0, list(r.metrics), r.targets, data,
              graph.num_classes(graph.output), "train.targets", r.threshold,
              graph.nodes[graph.resolve(graph.output)].shape)
    ]  # fmt: skip
    for hname, head in spec.task_heads.items():
        plans.append(
            _plan(hname, get(head.task), head.loss, head.loss_weight, list(head.metrics or []),
                  head.label, data, graph.num_classes(hname), f"heads.{hname}.label",
                  r.threshold, graph.nodes[graph.resolve(hname)].shape)
        )  # fmt: skip
    # a metric that means nothing for the data (top-5 of 5 classes) is left out unless it is
    # monitored: the main output's by its name as written, a head's by its prefixed name
    monitored = {m.removeprefix("val_") for m in r.monitors().values()}
    for i, plan in enumerate(plans):
        prefix = "" if i == 0 else f"{plan.name}_"
        own = {m[len(prefix) :] for m in monitored if m.startswith(prefix)}
        plan.metrics, plan.skipped = plan.task.active_metrics(plan.metrics, plan, own)
    return plans


def _plan(
    name: str, task: Task, loss: Any, weight: float, metrics: list[str], wanted: Any,
    data: Any, units: int | None, key: str, threshold: float, shape: Any = (),
) -> OutputPlan:  # fmt: skip
    if getattr(data, "masks", False) or task.reads_masks:  # segmentation (tasks/segmentation.py)
        return task.plan_masks(name, loss, weight, metrics, data, tuple(shape), threshold)
    columns = list(getattr(data, "columns", None) or [])
    if not columns:  # one integer class index per example
        if task.name != DEFAULT or wanted:
            raise RunError(
                f"data '{data.source}' has one class index per example, but the {task.name} "
                f"output '{name}' needs label columns"
                + (f" ({', '.join(wanted)})" if wanted else ""),
                hint=f"give {task.label_kind} (a CSV manifest with those columns, or an .npz "
                "whose y has one column per label)",
            )
        return OutputPlan(name, task, loss, weight, metrics, list(data.class_names),
                          threshold=threshold)  # fmt: skip
    chosen = list(wanted or columns)
    idx = column_indices(
        chosen, columns, key, f" in data '{data.source}'", f"name columns of the data in {key}"
    )
    table = data.label_table
    if task.name == DEFAULT:
        if len(idx) != 1:
            raise RunError(
                f"{key}: a classification output learns one class column; received {chosen}"
            )
        named = (getattr(data, "column_classes", None) or {}).get(chosen[0])
        classes = named or [str(i) for i in range(int(np.max(table[:, idx[0]])) + 1)]
    else:
        classes = chosen
    task.check_labels(table[:, idx], f"data '{data.source}' column(s) {', '.join(chosen)}")
    if units is not None and units != len(classes):
        what = "classes" if task.name == DEFAULT else f"{task.name} columns"
        raise RunError(
            f"data '{data.source}' has {len(classes)} {what} ({', '.join(classes[:10])}) for "
            f"output '{name}', but its final dense layer has {units} units",
            hint=f"set that layer to {len(classes)} units, or choose columns with {key}",
        )
    plan = OutputPlan(name, task, loss, weight, metrics, classes, idx, threshold=threshold)
    plan.column_names = chosen  # recorded in meta.json: the data columns this output reads
    plan.stats = task.label_stats(table[:, idx])
    return plan


def needs_table(spec: Any) -> bool:
    """Whether the spec's outputs read a label table (any task but classification, label
    columns, or heads of their own) rather than one integer class index per example."""
    return spec.task != DEFAULT or bool(spec.task_heads) or bool(spec.train.targets)


def describe_outputs(plans: list[OutputPlan]) -> list[dict[str, Any]]:
    """What meta.json keeps of each output, so predict/evaluate/export work without the spec:
    its name, task, classes, the label-table ``columns`` it reads (absent for one class index
    per example), a regression output's mean/std, a multilabel output's threshold."""
    out = []
    for p in plans:
        entry: dict[str, Any] = {"name": p.name, "task": p.task.name, "classes": list(p.classes)}
        if p.column_names is not None:  # a label table's columns, by name (tasks/saved.py)
            entry["columns"] = list(p.column_names)
        if p.stats is not None:
            entry["mean"] = [float(v) for v in p.stats[0]]
            entry["std"] = [float(v) for v in p.stats[1]]
        if p.task.name == "multilabel":
            entry["threshold"] = p.threshold
        out.append(entry)
    return out
