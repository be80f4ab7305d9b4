"""classification: one class per example (today's behaviour, and the default task).

Labels: an integer class index per example (class folders, ``path,label`` manifests, .npz
integer or one-hot ``y``), or one column of a label table (``train.targets: [digit]``).
Losses: categorical / sparse categorical / categorical focal crossentropy. Metrics: accuracy
and topK (top3, top5, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from .base import HeadIssue, OutputPlan, OutputView, Task

_METRIC = re.compile(r"^(accuracy|top([1-9][0-9]?))$")


# --- losses (Keras, lazy) ---------------------------------------------------------------------


def _cce(p, reduction):
    import keras

    return keras.losses.CategoricalCrossentropy(
        label_smoothing=p.label_smoothing, reduction=reduction
    )


def _scce(p, reduction):
    import keras

    return keras.losses.SparseCategoricalCrossentropy(reduction=reduction)


def _focal(p, reduction):
    import keras

    return keras.losses.CategoricalFocalCrossentropy(
        alpha=p.alpha, gamma=p.gamma, label_smoothing=p.label_smoothing, reduction=reduction
    )


LOSSES: dict[str, Callable[..., Any]] = {
    "categorical_crossentropy": _cce,
    "sparse_categorical_crossentropy": _scce,
    "categorical_focal_crossentropy": _focal,
}


# --- metrics: the Keras metric (fit) and per-example hits (custom loops, end-of-run) -----------


def _accuracy_metric(name: str, one_hot: bool) -> Any:
    import keras

    cls = keras.metrics.CategoricalAccuracy if one_hot else keras.metrics.SparseCategoricalAccuracy
    return cls(name=name)


def _accuracy_hits(name: str) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    def hits(probs, truth):
        return tf.cast(tf.equal(tf.argmax(probs, axis=-1), truth), tf.float32)

    return hits


def top_k_of(name: str) -> int:
    return int(name[3:])


def _top_k_metric(name: str, one_hot: bool) -> Any:
    import keras

    cls = (
        keras.metrics.TopKCategoricalAccuracy
        if one_hot
        else keras.metrics.SparseTopKCategoricalAccuracy
    )
    return cls(k=top_k_of(name), name=name)


def _top_k_hits(name: str) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    k = top_k_of(name)

    def hits(probs, truth):
        return tf.cast(tf.math.in_top_k(truth, tf.cast(probs, tf.float32), k), tf.float32)

    return hits


#: Every metric kind the recipe may name, with its Keras metric (the fit path) and its
#: per-example hits (the multi-worker step and the end-of-run evaluation): one place, so the
#: two training loops log the same metrics under the same names.
METRIC_KINDS: dict[str, tuple[Callable[[str, bool], Any], Callable[[str], Any]]] = {
    "accuracy": (_accuracy_metric, _accuracy_hits),
    "top": (_top_k_metric, _top_k_hits),
}


def metric_kind(name: str) -> str:
    return "top" if name.startswith("top") else name


class Classification(Task):
    name = "classification"
    description = "one class per example (softmax over the classes)"
    label_kind = "an integer class index per example"
    losses = tuple(LOSSES)
    default_loss = "categorical_crossentropy"
    metrics = ("accuracy", "topK")
    default_metrics = ("accuracy",)
    picture_stem = "confusion"

    def accepts_metric(self, name: str) -> bool:
        return bool(_METRIC.match(name))

    def metric_names(self) -> str:
        return "accuracy, topK (top3, top5, ...)"

    def monitor_mode(self, metric: str) -> str:
        return "max"

    def head_problems(self, out: OutputView) -> list[HeadIssue]:
        # Today's specs are accepted as they were: only a loss of another task is refused.
        return [] if out.loss in self.losses else [self.loss_issue(out)]

    def check_labels(self, y: np.ndarray, where: str) -> None:
        from ..errors import RunError

        flat = y.reshape(len(y), -1)
        whole = y.dtype.kind in "iu" or bool(np.all(np.mod(y, 1) == 0))
        if flat.shape[1] != 1 or not whole or (len(y) and float(np.min(y)) < 0):
            raise RunError(
                f"{where}: the classification task needs one integer class index per example; "
                f"received labels of shape {tuple(y.shape[1:]) or 'scalar'} ({y.dtype})",
                hint="set task: multilabel or task: regression for vector labels",
            )

    # --- Keras ----------------------------------------------------------------------------------
    def keras_loss(self, loss: Any, reduction: str | None = "sum_over_batch_size") -> Any:
        return LOSSES[loss.kind](loss.params, reduction)

    def keras_metrics(self, plan: OutputPlan, one_hot: bool) -> list[Any]:
        return [METRIC_KINDS[metric_kind(n)][0](n, one_hot) for n in plan.metrics]

    def metric_hits(self, names: list[str]) -> list[Callable[[Any, Any], Any]]:
        """Graph functions ``(probs, int labels) -> per-example 0/1`` of the metrics ``names``."""
        return [METRIC_KINDS[metric_kind(n)][1](n) for n in names]

    def target(self, y: Any, plan: OutputPlan) -> Any:
        import tensorflow as tf

        if plan.columns is not None:  # one column of a label table
            y = tf.cast(tf.reshape(tf.gather(y, plan.columns, axis=1), [-1]), tf.int32)
        return tf.one_hot(y, len(plan.classes)) if plan.loss.one_hot else y

    def active_metrics(self, metrics: list[str], plan: OutputPlan, monitored: set[str]):
        """A topK with k >= the number of classes is 1.0 by construction: it is left out,
        unless early stopping or the plateau schedule monitors it."""
        kept, skipped = [], []
        for name in metrics:
            pointless = metric_kind(name) == "top" and top_k_of(name) >= len(plan.classes)
            (skipped if pointless and name not in monitored else kept).append(name)
        return kept, skipped

    def scores(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, float]:
        truth = truth.reshape(-1).astype(np.int64)
        out = {}
        for name in plan.metrics:
            k = 1 if name == "accuracy" else top_k_of(name)
            order = np.argsort(-pred, axis=-1, kind="stable")[:, :k]
            out[name] = float((order == truth[:, None]).any(axis=1).mean()) if len(truth) else 0.0
        return out

    def report(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, Any]:
        from ..evaluate import score

        s = score(pred, truth.reshape(-1).astype(np.int64), plan.classes)
        return {"per_class": s["per_class"], "macro": s["macro"]}

    def predictions(self, pred: np.ndarray, plan: OutputPlan, k: int) -> list[dict[str, Any]]:
        from ..predict import top_k

        return [
            {"top": [{"class": c, "probability": p} for c, p in row]}
            for row in top_k(pred, plan.classes, k)
        ]

    # --- a saved model: evaluate / predict ---------------------------------------------------
    def evaluator(self, plans: list[OutputPlan]) -> Any:
        """One output of class indices: today's path (top-k, confusion); else the table's."""
        if len(plans) == 1 and plans[0].column_names is None:
            from ..evaluate import evaluate_classes

            return evaluate_classes
        return super().evaluator(plans)

    def predictor(self, plans: list[OutputPlan]) -> Any:
        if len(plans) == 1 and plans[0].column_names is None:
            from ..predict import predict_classes

            return predict_classes
        return super().predictor(plans)

    def truth_from(
        self, rows: np.ndarray, columns: list[str], plan: OutputPlan, where: str
    ) -> np.ndarray:
        from ..errors import RunError

        y = super().truth_from(rows, columns, plan, where).reshape(-1)
        if len(y) and int(y.max()) >= len(plan.classes):
            raise RunError(
                f"{where}: column {plan.column_names[0]!r} holds class {int(y.max())}, but the "
                f"model's output '{plan.name}' has {len(plan.classes)} classes",
                hint=f"class indices 0..{len(plan.classes) - 1}",
            )
        return y.astype(np.int64)

    def describe(self, report: dict[str, Any]) -> list[str]:
        return [
            f"  {r['class']}  precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
            f"F1 {r['f1']:.3f}  ({r['support']})"
            for r in report.get("per_class") or []
        ]

    def summary(self, record: dict[str, Any]) -> str:
        return ", ".join(f"{t['class']} {t['probability']:.3f}" for t in record["top"])

    def csv_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        best = record["top"][0]
        return {"class": best["class"], "probability": round(best["probability"], 6)}

    def picture(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan, path: Any,
                title: str) -> str | None:  # fmt: skip
        from sklearn.metrics import confusion_matrix

        from ..viz.confusion import plot_confusion

        ids = list(range(len(plan.classes)))
        cm = confusion_matrix(truth.reshape(-1), pred.argmax(-1), labels=ids)
        return str(plot_confusion(cm, plan.classes, path, title=title).path)


TASK = Classification()
