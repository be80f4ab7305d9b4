"""The outputs of a trained model, rebuilt from its metadata for ``evaluate`` and ``predict``.

``meta.json`` keeps, per output, its name, task, classes (labels, targets), a regression
output's mean/std and a multilabel output's threshold (``plan.describe_outputs``). From them
come the ``OutputPlan`` objects each task scores with, without the spec. The label columns an
output reads from a label table are its classes (multilabel labels, regression targets) or,
for a class column, the one data column no other output claims (``columns`` when written).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from .base import OutputPlan
from .registry import DEFAULT, get, names


def plans_of(meta: dict[str, Any] | None) -> list[OutputPlan]:
    """One plan per output of the model (one classification output without ``outputs``)."""
    meta = meta or {}
    saved = meta.get("outputs")
    if not isinstance(saved, list) or not saved:
        classes = [str(c) for c in meta.get("class_names") or []]
        task = _task(meta.get("task"), "task")
        return [OutputPlan(str(meta.get("output_name") or "output"), task, None, 1.0,
                           list(task.default_metrics), classes)]  # fmt: skip
    plans = []
    for i, entry in enumerate(saved):
        task = _task(entry.get("task"), f"outputs[{i}].task")
        plan = OutputPlan(
            str(entry.get("name")), task, None, 1.0, list(task.default_metrics),
            [str(c) for c in entry.get("classes") or []],
            threshold=float(entry.get("threshold", 0.5)),
        )  # fmt: skip
        if "mean" in entry and "std" in entry:
            plan.stats = (
                np.asarray(entry["mean"], np.float32),
                np.asarray(entry["std"], np.float32),
            )
        plan.column_names = task.saved_columns(entry, plan)
        plans.append(plan)
    _class_columns(plans, [str(c) for c in meta.get("class_names") or []])
    return plans


def _task(name: Any, key: str):
    try:
        return get(name if isinstance(name, str) else None)
    except KeyError:
        raise RunError(
            f"meta.json {key}: unknown task {name!r}", hint=f"known tasks: {', '.join(names())}"
        ) from None


def _class_columns(plans: list[OutputPlan], data_columns: list[str]) -> None:
    """A classification output of a label-table run learns the one column left to it."""
    table = len(plans) > 1 or plans[0].column_names is not None
    claimed = {c for p in plans for c in p.column_names or []}
    for p in plans:
        if p.task.name != DEFAULT or p.column_names is not None:
            continue
        if not table and data_columns == p.classes:
            continue  # today's classification run: one class index per example
        left = [c for c in data_columns if c not in claimed]
        if len(left) == 1:
            p.column_names = left
        elif table or data_columns != p.classes:
            raise RunError(
                f"meta.json: cannot tell which label column the classification output "
                f"'{p.name}' learns (candidates: {', '.join(left) or 'none'})",
                hint="retrain with a current cnnspec, whose meta.json names each output's columns",
            )


def picture_stem(meta: dict[str, Any] | None) -> str:
    """The name of evaluate's picture of the model's main output (confusion, pred_vs_true)."""
    return plans_of(meta)[0].task.picture_stem or "confusion"


def reads_table(plans: list[OutputPlan]) -> bool:
    """Whether the model's outputs read a label table (rather than a class index or masks)."""
    return any(p.column_names is not None for p in plans)


def where_of(source: str, data: Any = None) -> str:
    """The location of a label problem: a CSV manifest's header line, else the data's name."""
    shown = getattr(data, "source", None) or source
    return f"{source}:1" if str(source).lower().endswith(".csv") else f"data '{shown}'"


def truths(plans: list[OutputPlan], data: Any, rows: np.ndarray, where: str) -> list[np.ndarray]:
    """Each output's targets taken from the label-table ``rows`` of ``data`` (columns by name)."""
    columns = list(getattr(data, "columns", None) or [])
    if not columns:
        p = plans[0] if len(plans) == 1 else next(q for q in plans if q.task.name != DEFAULT)
        raise RunError(
            f"{where}: the data has one class index per example, but the model's {p.task.name} "
            f"output '{p.name}' needs label columns ({', '.join(p.column_names or [])})",
            hint=f"give {p.task.label_kind}",
        )
    out = []
    for p in plans:  # another output's columns are hidden from this one (None)
        others = {c for q in plans if q is not p for c in q.column_names or []}
        seen = [None if c in others and c not in (p.column_names or []) else c for c in columns]
        out.append(p.task.truth_from(rows, seen, p, where))
    return out


@dataclass
class OutputsRuntime:
    """A model run for all its outputs: ``predict(x)`` -> {output name: array}."""

    runtime: Any  # an export's runtime (one output) or None
    model: Any = None  # the Keras model with the outputs in ``names`` order
    names: tuple[str, ...] = ()

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        from ..predict import predict_batch

        if self.model is None:
            got = predict_batch(self.runtime, images)
            if isinstance(got, list | tuple) and len(got) == len(self.names):
                got = dict(zip(self.names, got, strict=True))
            elif not isinstance(got, dict):
                got = {self.names[0]: got}
            missing = [n for n in self.names if n not in got]
            if missing:  # an export made before exports kept every output
                raise RunError(
                    f"{self.runtime.path}: the {self.runtime.format} model answers "
                    f"{', '.join(map(repr, got))} but its metadata names the outputs "
                    f"{', '.join(map(repr, self.names))}",
                    hint="export the run again: an export keeps every output",
                )
            return {n: np.asarray(got[n], np.float32) for n in self.names}
        out = self.model(np.asarray(images, np.float32), training=False)
        out = out if isinstance(out, list | tuple) else [out]
        return {n: np.asarray(v, np.float32) for n, v in zip(self.names, out, strict=True)}


def open_outputs(path: str | Path, plans: list[OutputPlan]) -> tuple[OutputsRuntime, dict]:
    """Load a model source with every output in ``plans`` ((runtime, meta)): a run's Keras
    model with its heads, an export (SavedModel, TFLite, ONNX, .keras beside its metadata)
    answering ``{name: array}`` for every output its metadata names."""
    from ..modelio import check_model_source, load_keras_model

    source, meta = check_model_source(path)
    wanted = tuple(p.name for p in plans)
    if source.format != "keras" or meta is None:
        from ..export.runtime import open_model

        runtime, meta = open_model(path)
        return OutputsRuntime(runtime, names=wanted), meta
    import keras

    model = load_keras_model(source.path)
    have = list(getattr(model, "output_names", []) or [])
    missing = [n for n in wanted if n not in have]
    if missing:
        raise RunError(
            f"{source.path}: the model has no output {', '.join(map(repr, missing))} that its "
            f"metadata names; it has {', '.join(have)}"
        )
    outs = [model.outputs[have.index(n)] for n in wanted]
    shape = [int(d) if d is not None else None for d in model.inputs[0].shape[1:]]
    if shape != list(meta["input_shape"]):
        raise RunError(f"{source.path}: the model takes {shape} inputs but its metadata says "
                       f"{meta['input_shape']}")  # fmt: skip
    return OutputsRuntime(None, keras.Model(model.inputs[0], outs), wanted), meta
