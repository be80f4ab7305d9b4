"""multilabel: a set of labels per example (0..K labels), one sigmoid unit per label.

Labels: k-hot rows of a label table (a ``path,labels`` manifest with ``;``-separated labels,
one 0/1 column per label, an .npz with k-hot ``y``, or ``digits_multilabel``).
Losses: binary_crossentropy (default), focal (binary focal). Metrics: f1 (macro, at
``train.threshold``), f1_micro, map (mean average precision over labels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import HeadIssue, OutputPlan, OutputView, Task


class Multilabel(Task):
    name = "multilabel"
    description = "a set of labels per example (one sigmoid unit per label)"
    label_kind = "k-hot label rows (a 'path,labels' manifest, 0/1 columns, k-hot .npz y)"
    losses = ("binary_crossentropy", "focal")
    default_loss = "binary_crossentropy"
    metrics = ("f1", "f1_micro", "map")
    default_metrics = ("f1", "f1_micro", "map")
    monitor_max = frozenset(metrics)
    reads_table = True

    def head_problems(self, out: OutputView) -> list[HeadIssue]:
        found = []
        if out.activation != "sigmoid":
            found.append(
                HeadIssue(
                    "layers",
                    f"a multilabel output ends in sigmoid (one independent probability per "
                    f"label); {out.where} ends in {out.activation or 'no activation (linear)'}",
                    "end it with dense: K, sigmoid"
                    + ("; softmax makes the labels compete for one unit of probability"
                       if out.activation == "softmax" else ""),
                )
            )  # fmt: skip
        if out.loss not in self.losses:
            found.append(
                HeadIssue(
                    "loss",
                    f"loss {out.loss} does not fit the multilabel task of {out.where} (it "
                    f"assumes exactly one label per example); received loss={out.loss}",
                    "use binary_crossentropy or focal",
                )
            )
        return found

    def check_labels(self, y: np.ndarray, where: str) -> None:
        from ..errors import RunError

        bad = ~np.isin(y, (0.0, 1.0))
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise RunError(
                f"{where}: multilabel labels are 0 or 1 per label; row {i} holds {y[i, j]!r}",
                hint="write k-hot rows (or a 'path,labels' manifest with ';'-separated labels)",
            )

    # --- Keras ------------------------------------------------------------------------------------
    def keras_loss(self, loss: Any, reduction: str | None = "sum_over_batch_size") -> Any:
        import keras

        p = loss.params
        if loss.kind == "focal":
            return keras.losses.BinaryFocalCrossentropy(
                alpha=p.alpha, gamma=p.gamma, apply_class_balancing=True,
                label_smoothing=p.label_smoothing, reduction=reduction,
            )  # fmt: skip
        return keras.losses.BinaryCrossentropy(
            label_smoothing=p.label_smoothing, reduction=reduction
        )

    def keras_metrics(self, plan: OutputPlan, one_hot: bool) -> list[Any]:
        import keras

        k, t = len(plan.classes), plan.threshold
        made = {
            "f1": lambda: keras.metrics.F1Score(average="macro", threshold=t, name="f1"),
            "f1_micro": lambda: keras.metrics.F1Score(
                average="micro", threshold=t, name="f1_micro"
            ),
            "map": lambda: keras.metrics.AUC(
                curve="PR", multi_label=True, num_labels=k, name="map"
            ),
        }
        return [made[n]() for n in plan.metrics]

    def target(self, y: Any, plan: OutputPlan) -> Any:
        import tensorflow as tf

        return tf.gather(tf.cast(y, tf.float32), plan.columns, axis=1)

    # --- scores ------------------------------------------------------------------------------
    def scores(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, float]:
        from sklearn.metrics import f1_score

        hard = (pred >= plan.threshold).astype(int)
        every = {
            "f1": lambda: f1_score(truth, hard, average="macro", zero_division=0),
            "f1_micro": lambda: f1_score(truth, hard, average="micro", zero_division=0),
            "map": lambda: mean_average_precision(pred, truth),
        }
        return {n: float(every[n]()) for n in plan.metrics}

    def report(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, Any]:
        from sklearn.metrics import average_precision_score, precision_recall_fscore_support

        hard = (pred >= plan.threshold).astype(int)
        p, r, f1, support = precision_recall_fscore_support(truth, hard, zero_division=0)
        rows = []
        for i, name in enumerate(plan.classes):
            ap = (
                float(average_precision_score(truth[:, i], pred[:, i]))
                if truth[:, i].any()
                else None
            )
            rows.append(
                {"label": name, "precision": float(p[i]), "recall": float(r[i]),
                 "f1": float(f1[i]), "ap": ap, "support": int(support[i])}
            )  # fmt: skip
        return {"threshold": plan.threshold, "per_label": rows}

    def describe(self, report: dict[str, Any]) -> list[str]:
        rows = report.get("per_label") or []
        lines = [f"per label (threshold {report.get('threshold', 0.5)}):"] if rows else []
        for row in rows:
            ap = "-" if row["ap"] is None else f"{row['ap']:.3f}"
            lines.append(
                f"  {row['label']}  precision {row['precision']:.3f}  recall {row['recall']:.3f}"
                f"  F1 {row['f1']:.3f}  AP {ap}  ({row['support']} positives)"
            )
        return lines

    def predictions(self, pred: np.ndarray, plan: OutputPlan, k: int) -> list[dict[str, Any]]:
        out = []
        for row in pred:
            above = [i for i in np.argsort(-row, kind="stable") if row[i] >= plan.threshold]
            out.append(
                {
                    "labels": [plan.classes[i] for i in above],
                    "probabilities": {c: float(v) for c, v in zip(plan.classes, row, strict=True)},
                }
            )
        return out

    # --- a saved model: evaluate / predict ---------------------------------------------------
    def truth_from(
        self, rows: np.ndarray, columns: list[str], plan: OutputPlan, where: str
    ) -> np.ndarray:
        """k-hot rows in the model's label order: a label the data never names is absent
        (a ``path,labels`` manifest has a column per label it uses); one the model does not
        know is an error."""
        from ..errors import RunError

        wanted = plan.column_names or []
        unknown = [c for c in columns if c is not None and c not in wanted]
        if unknown or not any(c in columns for c in wanted):
            raise RunError(
                f"{where}: the data has labels the model's multilabel output '{plan.name}' "
                f"does not know: {', '.join(unknown[:10]) or 'none of its labels'}",
                hint=f"its labels are {', '.join(wanted[:20])} (a 'path,labels' manifest with "
                "';'-separated labels, or one 0/1 column per label)",
            )
        y = np.zeros((len(rows), len(wanted)), np.float32)
        for j, c in enumerate(wanted):
            if c in columns:
                y[:, j] = rows[:, columns.index(c)]
        self.check_labels(y, where)
        return y

    def summary(self, record: dict[str, Any]) -> str:
        probs = record["probabilities"]
        return ", ".join(f"{c} {probs[c]:.3f}" for c in record["labels"]) or "(no label)"

    def csv_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"labels": SEPARATOR.join(record["labels"]),
                **{f"p_{c}": round(v, 6) for c, v in record["probabilities"].items()}}  # fmt: skip


SEPARATOR = ";"  # as in a 'path,labels' manifest


def mean_average_precision(pred: np.ndarray, truth: np.ndarray) -> float:
    """The mean over labels with at least one positive of sklearn's average precision."""
    from sklearn.metrics import average_precision_score

    present = [i for i in range(truth.shape[1]) if truth[:, i].any()]
    if not present:
        return 0.0
    return float(np.mean([average_precision_score(truth[:, i], pred[:, i]) for i in present]))


TASK = Multilabel()
