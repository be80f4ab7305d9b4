"""Evaluating a model on labelled data: accuracy, top-k, per-class precision/recall/F1, confusion.

Any model source works (run directory, .keras, SavedModel, TFLite, ONNX). Data comes from
``cnnspec.data.load_data`` (the same sources and deterministic splits as training), so
``--split test`` is the same held-out set that ``cnnspec train`` never saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data.registry import accepted
from .errors import RunError

SPLITS = ("test", "val", "train", "all")


@dataclass
class Evaluation:
    """Scores of a model on one split of a data source."""

    model: str
    data: str
    split: str
    class_names: list[str]
    n: int
    accuracy: float
    top_k: int | None  # None: k >= the number of classes, where top-k is 1.0 by construction
    top_k_accuracy: float | None
    per_class: list[dict[str, Any]]
    macro: dict[str, float]
    confusion: list[list[int]]
    confusion_png: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "split": self.split,
            "n": self.n,
            "accuracy": self.accuracy,
            **({f"top_{self.top_k}_accuracy": self.top_k_accuracy} if self.top_k else {}),
            "top_k": self.top_k,
            "macro": self.macro,
            "per_class": self.per_class,
            "class_names": self.class_names,
            "confusion_matrix": self.confusion,
            "confusion_png": self.confusion_png,
            **self.extra,  # a task's own scores (segmentation: mean_iou, dice)
        }


def score(
    probs: np.ndarray, labels: np.ndarray, class_names: list[str], k: int = 3
) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class P/R/F1/support and the confusion matrix.

    Top-k is left out (``top_k`` None) when k >= the number of classes: it is 1.0 there.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    n_classes = len(class_names)
    pred = probs.argmax(axis=-1)
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    top_hit = (order == labels[:, None]).any(axis=1)
    top_k = k if k < n_classes else None
    ids = list(range(n_classes))
    p, r, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    per_class = [
        {
            "class": class_names[i],
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in ids
    ]
    present = support > 0  # macro averages over the classes that occur in this split
    macro = {
        "precision": float(p[present].mean()) if present.any() else 0.0,
        "recall": float(r[present].mean()) if present.any() else 0.0,
        "f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    return {
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        "top_k": top_k,
        "top_k_accuracy": (float(top_hit.mean()) if len(labels) else 0.0) if top_k else None,
        "per_class": per_class,
        "macro": macro,
        "confusion": confusion_matrix(labels, pred, labels=ids).tolist(),
    }


def align_labels(labels: np.ndarray, data_names: list[str], model_names: list[str]) -> np.ndarray:
    """Map the data's label ids onto the model's class order (matching class names)."""
    if list(data_names) == list(model_names):
        return labels
    missing = [n for n in data_names if n not in model_names]
    if missing:
        raise RunError(
            f"the data has classes the model does not know: {', '.join(missing[:5])}",
            hint=f"the model's classes are {', '.join(model_names[:10])}",
        )
    mapping = np.array([model_names.index(n) for n in data_names])
    return mapping[labels]


@dataclass
class EvalRequest:
    """What ``evaluate`` was asked, for the evaluator of the model's task (``Task.evaluator``)."""

    model: str | Path
    data_source: str
    split: str
    k: int
    png: Path | None
    plans: list[Any]  # the model's outputs (tasks/saved.py)


def evaluate_model(
    model: str | Path,
    data_source: str | None = None,
    *,
    split: str = "test",
    k: int = 3,
    confusion_png: str | Path | None = None,
) -> Any:
    """Evaluate a model source on a split of a data source (default: the one it was trained on,
    from its metadata's ``data``); optionally draw the confusion matrix (a regression output:
    predicted vs true). The model's main task evaluates it: an ``Evaluation`` (classification,
    segmentation) or a ``TaskEvaluation`` (multilabel, regression, several heads)."""
    from .modelio import check_model_source
    from .tasks.saved import plans_of

    if split not in SPLITS:
        raise RunError(f"unknown split '{split}'", hint=f"use one of {', '.join(SPLITS)}")
    if k < 1:
        raise RunError(f"--top-k must be at least 1, received {k}")
    _, meta = check_model_source(model)
    if data_source is None:
        data_source = (meta or {}).get("data")
        if not isinstance(data_source, str) or not data_source:
            raise RunError(
                "no --data given and the model's metadata does not say what it was trained on",
                hint=f"pass --data: {accepted()}",
            )
    plans = plans_of(meta)
    png = None if confusion_png is None else Path(confusion_png)
    request = EvalRequest(model, data_source, split, k, png, plans)
    return plans[0].task.evaluator(plans)(request)


def evaluate_classes(req: EvalRequest) -> Evaluation:
    """Today's evaluation: one class index per example (top-k, per class, confusion)."""
    from .data import load_data
    from .data.batches import labelled_batches, split_names
    from .export.runtime import open_model
    from .modelio import find_model
    from .predict import BATCH, predict_batch

    runtime, meta = open_model(req.model)
    data = load_data(req.data_source, meta["input_shape"])
    if data.masks:
        raise RunError(
            f"data '{data.source}' has a mask per image, but the model classifies whole images",
            hint="evaluate it on class folders, a 'path,label' manifest or an .npz of labels",
        )
    names = split_names(data, req.split)
    batches, labels = [], []  # one batch of images in memory at a time, never the split
    for _, x, y in labelled_batches(data, names, meta["input_shape"], BATCH, what="evaluating"):
        batches.append(predict_batch(runtime, x))
        labels.append(y)
    if not labels:
        raise RunError(f"data '{data.source}' has no images in split '{req.split}'")
    probs = np.concatenate(batches)
    y = align_labels(np.concatenate(labels), data.class_names, meta["class_names"])
    s = score(probs, y, meta["class_names"], req.k)
    png = None
    if req.png is not None:
        from .viz.confusion import plot_confusion

        plot_confusion(
            np.array(s["confusion"]),
            meta["class_names"],
            req.png,
            title=f"{meta.get('name', 'model')} on {data.source} [{req.split}] "
            f"accuracy {s['accuracy']:.3f}",
        )
        png = str(req.png)
    return Evaluation(
        model=str(find_model(req.model).path),
        data=data.source,  # arrays given in Python: what they are, not their repr
        split=req.split,
        class_names=list(meta["class_names"]),
        n=int(len(y)),
        accuracy=s["accuracy"],
        top_k=s["top_k"],
        top_k_accuracy=s["top_k_accuracy"],
        per_class=s["per_class"],
        macro=s["macro"],
        confusion=s["confusion"],
        confusion_png=png,
    )


def evaluate_masks_run(req: EvalRequest) -> Evaluation:
    """A segmentation model on a mask source (cnnspec/tasks/segmentation_io.py)."""
    from .data import load_data
    from .data.batches import split_names
    from .export.runtime import open_model

    runtime, meta = open_model(req.model)
    data = load_data(req.data_source, meta["input_shape"])
    if not data.masks:
        raise RunError(
            f"data '{data.source}' has no mask per image, but the model segments images",
            hint="give a folder with images/ and masks/, an 'image,mask' CSV or an .npz of masks",
        )
    names = split_names(data, req.split)
    return _evaluate_masks(
        runtime, meta, data, names, req.model, req.data_source, req.split, req.png
    )


def _evaluate_masks(runtime, meta, data, names, model, data_source, split, png) -> Evaluation:
    from .modelio import find_model
    from .tasks.segmentation_io import evaluate_masks, evaluation_of

    report, n = evaluate_masks(runtime, meta, data, names)
    if not n:
        raise RunError(f"data '{data.source}' has no images in split '{split}'")
    if png is not None:
        from .viz.confusion import plot_confusion

        plot_confusion(
            np.array(report["confusion_matrix"]),
            [r["class"] for r in report["per_class"]],
            png,
            title=f"{meta.get('name', 'model')} on {data_source} [{split}] pixels, "
            f"mean IoU {report['mean_iou']:.3f}",
        )
    return evaluation_of(
        report, n, model=str(find_model(model).path), data=data_source, split=split,
        confusion_png=None if png is None else str(png),
    )  # fmt: skip
