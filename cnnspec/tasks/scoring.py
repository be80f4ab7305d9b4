"""The end-of-run scores of a model whose outputs are not all plain classification.

Every output's predictions over a split are gathered (a split of a label table is small next
to its images: one row per example), then each output's task scores them in numpy: the loss
(its Keras loss on the whole split), its metrics, and the per-label / per-target report.
Keys: the main output's as written (``loss``, ``f1``, ``mae``), a head's prefixed with its name
(``count_mae``), as Keras logs them in history.csv.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import OutputPlan


def predict_split(model: Any, ds: Any, batch_size: int, names: list[str]):
    """({output: predictions}, the split's labels) of a dataset of (image, label)."""
    from ..data import make_pipeline

    preds: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels = []
    for x, y in make_pipeline(ds, batch_size, training=False):
        out = model(x, training=False)
        out = out if isinstance(out, dict) else {names[0]: out}
        for n in names:
            preds[n].append(np.asarray(out[n], np.float32))
        labels.append(np.asarray(y))
    return {n: np.concatenate(v) for n, v in preds.items()}, np.concatenate(labels)


def output_scores(plan: OutputPlan, pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Loss and metrics of one output on one split."""
    import keras

    truth = plan.task.truth(labels, plan)
    with_target = np.asarray(plan.task.target(labels, plan))
    loss = float(keras.ops.convert_to_numpy(plan.task.keras_loss(plan.loss)(with_target, pred)))
    return {"loss": loss, **plan.task.scores(pred, truth, plan)}


def evaluate_outputs(model: Any, session: Any) -> tuple[dict[str, dict], dict[str, Any]]:
    """Scores of the val and test splits, and every output's report on the test split (else
    val), for metrics.json (``per_class``: {"split", "outputs": {name: report}})."""
    plans: list[OutputPlan] = session.outputs
    names = [p.name for p in plans]
    scores: dict[str, dict] = {"val": {}, "test": {}}
    report: dict[str, Any] = {}
    for split in ("val", "test"):
        ds = getattr(session.data, split)
        if ds is None:
            continue
        preds, labels = predict_split(model, ds, session.recipe.batch_size, names)
        row: dict[str, float] = {}
        total = 0.0
        for i, plan in enumerate(plans):
            got = output_scores(plan, preds[plan.name], labels)
            total += plan.weight * got["loss"]
            prefix = "" if i == 0 else f"{plan.name}_"
            row.update({f"{prefix}{k}": v for k, v in got.items()})
        if len(plans) > 1:
            row = {"loss": total, **{k: v for k, v in row.items() if k != "loss"},
                   f"{plans[0].name}_loss": row["loss"]}  # fmt: skip
        scores[split] = row
        report = {
            "split": split,
            "outputs": {
                p.name: {"task": p.task.name,
                         **p.task.report(preds[p.name], p.task.truth(labels, p), p)}
                for p in plans
            },
        }  # fmt: skip
    return scores, report


def describe(report: dict[str, Any]) -> list[str]:
    """Terminal lines of ``evaluate_outputs``' report."""
    from .registry import get

    lines = []
    for name, rep in (report.get("outputs") or {}).items():
        task = get(rep.get("task"))
        lines.append(f"{name} ({task.name}) on {report.get('split')}:")
        lines += task.describe(rep)
    return lines


def plain(session: Any) -> bool:
    """Whether the run is today's: one classification output on integer labels (its scores
    are then computed by the streaming path in train/lifecycle.py, unchanged)."""
    plans = session.outputs
    return not plans or (
        len(plans) == 1 and plans[0].task.name == "classification" and plans[0].columns is None
    )
