"""The per-class report of a run: precision, recall and F1 of every class, from a confusion
matrix (pure numpy; rows = true class, columns = predicted)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Classes the end-of-training summary prints (worst F1 first); metrics.json keeps them all.
SHOWN = 5


def class_report(confusion: np.ndarray, class_names: list[str], split: str) -> dict[str, Any]:
    """{"split", "classes": [{class, precision, recall, f1, support}] worst F1 first, "macro"}.

    A class that never occurs and is never predicted has no score (left out of the macro
    average); one that occurs and is never predicted has precision 0.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(hits), where=total > 0)
    rows = [
        {
            "class": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    ]
    present = [row for row in rows if row["support"] > 0]
    rows.sort(key=lambda row: (row["support"] == 0, row["f1"], row["class"]))
    macro = {
        key: float(np.mean([row[key] for row in present])) if present else 0.0
        for key in ("precision", "recall", "f1")
    }
    return {"split": split, "classes": rows, "macro": macro}


def describe_report(report: dict[str, Any], shown: int = SHOWN) -> list[str]:
    """A few lines for the terminal: the worst classes first (all when there are few)."""
    rows = [row for row in report.get("classes", []) if row["support"] > 0]
    if not rows:
        return []
    width = max(len(row["class"]) for row in rows[:shown])
    macro = report["macro"]
    more = len(rows) - shown
    lines = [
        f"per class on {report['split']} (worst F1 first; macro F1 {macro['f1']:.4f}"
        + (f"; {more} more in metrics.json" if more > 0 else "")
        + "):"
    ]
    for row in rows[:shown]:
        lines.append(
            f"  {row['class']:<{width}}  precision {row['precision']:.3f}  "
            f"recall {row['recall']:.3f}  F1 {row['f1']:.3f}  ({row['support']} images)"
        )
    return lines
