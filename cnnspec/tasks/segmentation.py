"""segmentation: one class per pixel.

Labels: a mask per image, (H, W) uint8 class indices at the input's size, **255 = ignore**
(image folders with ``images/`` + ``masks/``, ``image,mask`` manifests, ``.npz`` with ``y`` of
shape (N, H, W), the shipped ``digits_segmentation``). The head: the input's spatial size and
one softmax channel per class, or one sigmoid channel (binary: 0 background, 1 foreground).
Losses: ``sparse_categorical_crossentropy`` (default), ``dice``, ``focal``, ``dice_ce``; every
one skips ignored pixels. Metrics: ``mean_iou`` (default) and ``dice``, over the pixels of a
whole split (a confusion matrix, ignored pixels left out); ``evaluate`` adds per-class IoU and
the pixel confusion matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import HeadIssue, OutputPlan, OutputView, Task

IGNORE = 255
LOSSES = ("sparse_categorical_crossentropy", "dice", "focal", "dice_ce")
METRICS = ("mean_iou", "dice")
_EPS = 1e-7


def channels_of(shape: tuple[int, ...]) -> int:
    return int(shape[-1]) if shape else 0


def classes_of(channels: int) -> int:
    """Classes of a head with ``channels`` outputs (one sigmoid channel: two classes)."""
    return 2 if channels == 1 else channels


# --- numpy: the confusion matrix and the scores made from it ------------------------------------


def confusion(pred: np.ndarray, truth: np.ndarray, k: int) -> np.ndarray:
    """(k, k) pixel counts, rows = true class, columns = predicted; ignored pixels left out."""
    truth = truth.reshape(-1).astype(np.int64)
    pred = pred.reshape(-1).astype(np.int64)
    keep = (truth != IGNORE) & (truth < k)
    return np.bincount(truth[keep] * k + pred[keep], minlength=k * k).reshape(k, k)


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class (NaN where the class is neither true nor predicted anywhere)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def dice_per_class(cm: np.ndarray) -> np.ndarray:
    tp = np.diag(cm).astype(np.float64)
    total = cm.sum(0) + cm.sum(1)
    return np.where(total > 0, 2 * tp / np.maximum(total, 1), np.nan)


def _mean(values: np.ndarray) -> float:
    present = values[~np.isnan(values)]
    return float(present.mean()) if len(present) else 0.0


def labels_of(pred: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class indices of model outputs (N, H, W, C): argmax, or one sigmoid channel > threshold."""
    if pred.shape[-1] == 1:
        return (pred[..., 0] > threshold).astype(np.int64)
    return pred.argmax(axis=-1)


# --- Keras (lazy): losses and metrics --------------------------------------------------------------


def keras_parts():
    """The Keras loss and metric classes (made once, registered for saving)."""
    global _PARTS
    if _PARTS is None:
        _PARTS = _make_parts()
    return _PARTS


_PARTS: Any = None


def _make_parts():
    import keras
    from keras import ops

    def two_class(y_pred):
        y_pred = ops.cast(y_pred, "float32")
        if y_pred.shape[-1] == 1:  # one sigmoid channel: background, foreground
            return ops.concatenate([1.0 - y_pred, y_pred], axis=-1)
        return y_pred

    def split(y_true, y_pred):
        """(probs, one-hot target with ignored pixels zeroed, valid mask [n, h, w])."""
        probs = two_class(y_pred)
        y = ops.cast(y_true, "int32")
        if len(y.shape) == len(probs.shape):
            y = ops.squeeze(y, -1)
        valid = ops.not_equal(y, IGNORE)
        onehot = ops.one_hot(ops.where(valid, y, 0), probs.shape[-1])
        valid_f = ops.cast(valid, "float32")
        return probs, onehot * valid_f[..., None], valid_f

    def pixel_mean(values, valid):  # per example: mean over its valid pixels
        axes = list(range(1, len(values.shape)))
        return ops.sum(values * valid, axis=axes) / ops.maximum(ops.sum(valid, axis=axes), 1.0)

    def crossentropy(y_true, y_pred, gamma=0.0):
        probs, onehot, valid = split(y_true, y_pred)
        p_t = ops.sum(probs * onehot, axis=-1)
        p_t = ops.clip(p_t, _EPS, 1.0)
        ce = -ops.log(p_t)
        if gamma:
            ce = ce * ops.power(1.0 - p_t, gamma)
        return pixel_mean(ce, valid)

    def dice(y_true, y_pred):
        probs, onehot, valid = split(y_true, y_pred)
        probs = probs * valid[..., None]
        axes = list(range(1, len(probs.shape) - 1))
        inter = ops.sum(probs * onehot, axis=axes)
        total = ops.sum(probs, axis=axes) + ops.sum(onehot, axis=axes)
        return 1.0 - ops.mean((2.0 * inter + 1.0) / (total + 1.0), axis=-1)  # smoothed

    @keras.saving.register_keras_serializable(package="cnnspec")
    class MaskLoss(keras.losses.Loss):
        """A segmentation loss by name (one value per example: ignored pixels skipped)."""

        def __init__(self, kind="sparse_categorical_crossentropy", gamma=2.0, **kwargs):
            kwargs.setdefault("name", kind)
            super().__init__(**kwargs)
            self.kind, self.gamma = kind, float(gamma)

        def call(self, y_true, y_pred):
            if self.kind == "dice":
                return dice(y_true, y_pred)
            if self.kind == "focal":
                return crossentropy(y_true, y_pred, self.gamma)
            ce = crossentropy(y_true, y_pred)
            return ce + dice(y_true, y_pred) if self.kind == "dice_ce" else ce

        def get_config(self):
            return {**super().get_config(), "kind": self.kind, "gamma": self.gamma}

    @keras.saving.register_keras_serializable(package="cnnspec")
    class MaskIoU(keras.metrics.MeanIoU):
        """MeanIoU over a split's pixels (ignore honoured) of argmax / thresholded outputs;
        ``score='dice'`` gives the mean Dice of the same confusion matrix."""

        def __init__(self, num_classes, score="mean_iou", threshold=0.5, **kwargs):
            kwargs.setdefault("name", score)
            kwargs.pop("ignore_class", None)
            kwargs.pop("sparse_y_pred", None)
            super().__init__(num_classes, ignore_class=IGNORE, sparse_y_pred=True, **kwargs)
            self.score, self.threshold = score, float(threshold)

        def update_state(self, y_true, y_pred, sample_weight=None):
            if y_pred.shape[-1] == 1:
                labels = ops.cast(ops.greater(y_pred[..., 0], self.threshold), "int32")
            else:
                labels = ops.argmax(y_pred, axis=-1)
            return super().update_state(y_true, labels, sample_weight)

        def result(self):
            if self.score != "dice":
                return super().result()
            cm = ops.cast(self.total_cm, "float32")
            tp = ops.diagonal(cm)
            total = ops.sum(cm, axis=0) + ops.sum(cm, axis=1)
            present = ops.cast(ops.greater(total, 0), "float32")
            per = ops.where(total > 0, 2.0 * tp / ops.maximum(total, 1.0), 0.0)
            return ops.sum(per) / ops.maximum(ops.sum(present), 1.0)

        def get_config(self):
            return {**super().get_config(), "score": self.score, "threshold": self.threshold}

    return MaskLoss, MaskIoU


# --- the task ----------------------------------------------------------------------------------------


class Segmentation(Task):
    name = "segmentation"
    description = "one class per pixel (softmax over the classes, or one sigmoid channel)"
    label_kind = "a mask per image (class indices, 255 = ignore)"
    losses = LOSSES
    default_loss = "sparse_categorical_crossentropy"
    metrics = METRICS
    default_metrics = ("mean_iou",)
    monitor_max = frozenset(METRICS)

    reads_masks = True
    # explain: a class's share of the predicted mask (its probability averaged over pixels)
    explain_score = "pixel_share"
    explain_pooled = True

    def explain_order(self, scores: np.ndarray) -> list[int]:
        """By pixel share, the class covering most of the image last (usually the background:
        the class a user asks about is one of the objects on it)."""
        order = super().explain_order(scores)
        return [*order[1:], order[0]] if len(order) > 1 else order

    def evaluator(self, plans: list[OutputPlan]) -> Any:
        from ..evaluate import evaluate_masks_run

        return evaluate_masks_run

    def predictor(self, plans: list[OutputPlan]) -> Any:
        from ..predict import predict_masks_run

        return predict_masks_run

    def head_problems(self, out: OutputView) -> list[HeadIssue]:
        found = [] if out.loss in self.losses else [self.loss_issue(out)]
        return found + head_shape_problems(out, out.input_shape)

    def monitor_mode(self, metric: str) -> str:
        return "max" if metric.removeprefix("val_") in self.monitor_max else "min"

    def check_labels(self, y: np.ndarray, where: str) -> None:
        from ..errors import RunError

        if y.ndim != 3:
            raise RunError(
                f"{where}: the segmentation task needs a mask (H, W) per image; received labels "
                f"of shape {tuple(y.shape[1:]) or 'scalar'}",
                hint="give images/ + masks/ folders, an image,mask manifest or an .npz whose y "
                "is (N, H, W)",
            )

    def plan_masks(
        self, name: str, loss: Any, weight: float, metrics: list[str], data: Any,
        shape: tuple[int, ...], threshold: float,
    ) -> OutputPlan:  # fmt: skip
        """The output's plan: RunError (exit 1) unless the data has masks whose class indices
        fit the head's channels."""
        from ..errors import RunError

        if not getattr(data, "masks", False):
            raise RunError(
                f"data '{data.source}' has one label per image, but the segmentation output "
                f"'{name}' needs {self.label_kind}",
                hint="give a folder with images/ and masks/, an image,mask CSV manifest, an .npz "
                "whose y is (N, H, W), or data: digits_segmentation",
            )
        k = classes_of(channels_of(shape))
        found = len(data.class_names) - 1  # the data's classes: 0..the largest index found
        if found >= k:
            raise RunError(
                f"data '{data.source}' has masks with class index {found} (classes 0..{found}), "
                f"but the segmentation output '{name}' has {channels_of(shape)} channel(s) "
                f"({k} classes)",
                hint=f"set the last conv to {found + 1} channels (softmax), or use matching "
                "masks (255 = ignore)",
            )
        names = list(data.class_names)
        classes = names if len(names) == k else [*names[:k], *map(str, range(len(names), k))]
        return OutputPlan(name, self, loss, weight, metrics, classes, threshold=threshold)

    # --- Keras ------------------------------------------------------------------------------------
    def keras_loss(self, loss: Any, reduction: str | None = "sum_over_batch_size") -> Any:
        mask_loss, _ = keras_parts()
        gamma = getattr(loss.params, "gamma", 2.0)
        return mask_loss(loss.kind, gamma=gamma, reduction=reduction)

    def keras_metrics(self, plan: OutputPlan, one_hot: bool) -> list[Any]:
        _, iou = keras_parts()
        k = len(plan.classes)
        return [iou(k, score=n, threshold=plan.threshold) for n in plan.metrics]

    def target(self, y: Any, plan: OutputPlan) -> Any:
        import tensorflow as tf

        return tf.cast(y, tf.int32)

    # --- scores (numpy) -----------------------------------------------------------------------------
    def scores(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, float]:
        cm = confusion(labels_of(pred, plan.threshold), truth, len(plan.classes))
        made = {"mean_iou": _mean(iou_per_class(cm)), "dice": _mean(dice_per_class(cm))}
        return {name: made[name] for name in plan.metrics}

    def report(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, Any]:
        cm = confusion(labels_of(pred, plan.threshold), truth, len(plan.classes))
        return report_of(cm, plan.classes)

    def describe(self, report: dict[str, Any]) -> list[str]:
        return describe_report(report)

    def predictions(self, pred: np.ndarray, plan: OutputPlan, k: int) -> list[dict[str, Any]]:
        out = []
        for labels in labels_of(pred, plan.threshold):
            counts = np.bincount(labels.reshape(-1), minlength=len(plan.classes))
            share = counts / max(int(counts.sum()), 1)
            out.append(
                {"pixels": {c: float(s) for c, s in zip(plan.classes, share, strict=True) if s > 0}}
            )
        return out


def head_shape_problems(out: OutputView, input_shape: tuple[int, ...] | None) -> list[HeadIssue]:
    """The head must keep the input's spatial size and have one softmax channel per class or
    one sigmoid channel."""
    found = []
    shape = tuple(out.shape)
    if input_shape is not None and len(shape) != len(input_shape):
        return [
            HeadIssue(
                "layers",
                f"a segmentation output is a map of the input's size, but {out.where} has shape "
                f"{'x'.join(map(str, shape))} for a {'x'.join(map(str, input_shape))} input",
                "end with a 1x1 conv with one channel per class (softmax), not a dense layer",
            )
        ]
    if input_shape is not None and shape[:-1] != tuple(input_shape[:-1]):
        want = "x".join(map(str, input_shape[:-1]))
        found.append(
            HeadIssue(
                "layers",
                f"a segmentation output has the input's spatial size {want}; {out.where} is "
                f"{'x'.join(map(str, shape[:-1]))}",
                "use p=same convolutions, or upsample / crop the output to the input's size",
            )
        )
    channels = channels_of(shape)
    if channels == 1 and out.activation != "sigmoid":
        found.append(
            HeadIssue(
                "layers",
                f"one output channel is a binary mask and needs a sigmoid; {out.where} ends in "
                f"{out.activation or 'linear'}",
                "end with conv: 1x1, 1, sigmoid (or one channel per class with softmax)",
            )
        )
    elif channels > 1 and out.activation != "softmax":
        found.append(
            HeadIssue(
                "layers",
                f"{channels} output channels are per-pixel class scores and need a softmax; "
                f"{out.where} ends in {out.activation or 'linear'}",
                f"end with conv: 1x1, {channels}, softmax",
            )
        )
    return found


def report_of(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Per-class IoU / Dice / pixels, the means and the pixel confusion matrix."""
    iou, dice = iou_per_class(cm), dice_per_class(cm)
    total = int(cm.sum())
    per_class = [
        {
            "class": c,
            "iou": None if np.isnan(iou[i]) else float(iou[i]),
            "dice": None if np.isnan(dice[i]) else float(dice[i]),
            "pixels": int(cm[i].sum()),
        }
        for i, c in enumerate(classes)
    ]
    return {
        "per_class": per_class,
        "mean_iou": _mean(iou),
        "dice": _mean(dice),
        "pixel_accuracy": float(np.trace(cm) / total) if total else 0.0,
        "confusion_matrix": cm.tolist(),
    }


def describe_report(report: dict[str, Any]) -> list[str]:
    rows = report.get("per_class") or []
    if not rows:
        return []
    width = max(5, *(len(r["class"]) for r in rows))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}  {'pixels':>9}"]
    for r in rows:
        iou = "-" if r["iou"] is None else f"{r['iou']:.4f}"
        dice = "-" if r["dice"] is None else f"{r['dice']:.4f}"
        lines.append(f"{r['class']:<{width}}  {iou:>6}  {dice:>6}  {r['pixels']:>9}")
    lines.append(
        f"mean IoU {report['mean_iou']:.4f}, mean Dice {report['dice']:.4f}, pixel accuracy "
        f"{report['pixel_accuracy']:.4f}"
    )
    return lines


TASK = Segmentation()
