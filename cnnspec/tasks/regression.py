"""regression: numbers per example (a count, an angle, an age), one linear unit per target.

Labels: numeric columns of a label table (a CSV manifest's columns chosen by
``train.targets: [count]`` or ``heads.<h>.label``, an .npz with target vectors, or
``digits_count``). Targets are standardised with the training split's mean and standard
deviation (kept in meta.json), so the net learns values near 0; every score, report and
prediction is in the data's own units. Losses: mse (default), mae, huber. Metrics: mae, rmse,
r2 (averaged over targets).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import HeadIssue, OutputPlan, OutputView, Task


class Regression(Task):
    name = "regression"
    description = "numbers per example (one linear unit per target)"
    label_kind = "numeric target columns (a CSV manifest with train.targets, an .npz y)"
    losses = ("mse", "mae", "huber")
    default_loss = "mse"
    metrics = ("mae", "rmse", "r2")
    default_metrics = ("mae", "rmse", "r2")
    monitor_max = frozenset({"r2"})
    reads_table = True
    picture_stem = "pred_vs_true"
    explain_score = "value"  # maps explain the (standardised) predicted value of a target

    def explain_value(self, plan: OutputPlan, cls: int, score: float) -> float:
        if plan.stats is None:
            return float(score)
        mean, std = plan.stats
        return float(score * std[cls] + mean[cls])

    def head_problems(self, out: OutputView) -> list[HeadIssue]:
        found = []
        if out.activation is not None:
            found.append(
                HeadIssue(
                    "layers",
                    f"a regression output is linear (its targets are standardised, so they "
                    f"are negative too); {out.where} ends in {out.activation}",
                    "end it with dense: T (no activation), one unit per target",
                )
            )
        if out.targets and out.units is not None and out.units != len(out.targets):
            found.append(
                HeadIssue(
                    "layers",
                    f"{out.where} has {out.units} units but learns {len(out.targets)} "
                    f"target(s) ({', '.join(out.targets)})",
                    f"end it with dense: {len(out.targets)}",
                )
            )
        if out.loss not in self.losses:
            found.append(self.loss_issue(out))
        return found

    def check_labels(self, y: np.ndarray, where: str) -> None:
        from ..errors import RunError

        if not np.isfinite(y).all():
            raise RunError(f"{where}: regression targets must be finite numbers")

    def label_stats(self, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = train.mean(axis=0).astype(np.float32)
        std = train.std(axis=0).astype(np.float32)
        return mean, np.where(std > 0, std, 1.0).astype(np.float32)

    # --- Keras ------------------------------------------------------------------------------------
    def keras_loss(self, loss: Any, reduction: str | None = "sum_over_batch_size") -> Any:
        import keras

        if loss.kind == "huber":
            return keras.losses.Huber(delta=loss.params.delta, reduction=reduction)
        if loss.kind == "mae":
            return keras.losses.MeanAbsoluteError(reduction=reduction)
        return keras.losses.MeanSquaredError(reduction=reduction)

    def keras_metrics(self, plan: OutputPlan, one_hot: bool) -> list[Any]:
        """The metrics in the data's units: targets and outputs are unstandardised first."""
        import keras

        mean, std = plan.stats
        inner = {
            "mae": lambda: keras.metrics.MeanAbsoluteError(name="mae"),
            "rmse": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
            "r2": lambda: keras.metrics.R2Score(name="r2"),
        }
        return [unscaled(inner[n](), mean, std) for n in plan.metrics]

    def target(self, y: Any, plan: OutputPlan) -> Any:
        import tensorflow as tf

        mean, std = plan.stats
        return (tf.gather(tf.cast(y, tf.float32), plan.columns, axis=1) - mean) / std

    # --- scores (in the data's units) ------------------------------------------------------
    def values(self, pred: np.ndarray, plan: OutputPlan) -> np.ndarray:
        mean, std = plan.stats
        return pred.reshape(len(pred), -1) * std + mean

    def scores(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, float]:
        per = self._per_target(self.values(pred, plan), truth)
        return {n: float(np.mean([t[n] for t in per])) for n in plan.metrics}

    @staticmethod
    def _per_target(values: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
        out = []
        for j in range(truth.shape[1]):
            err = values[:, j] - truth[:, j]
            var = float(np.var(truth[:, j]))
            out.append(
                {
                    "mae": float(np.mean(np.abs(err))),
                    "rmse": float(np.sqrt(np.mean(err**2))),
                    "r2": 1.0 - float(np.mean(err**2)) / var if var > 0 else 0.0,
                    "baseline_mae": float(np.mean(np.abs(truth[:, j] - truth[:, j].mean()))),
                }
            )
        return out

    def report(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, Any]:
        per = self._per_target(self.values(pred, plan), truth)
        return {
            "per_target": [{"target": c, **row} for c, row in zip(plan.classes, per, strict=True)]
        }

    def describe(self, report: dict[str, Any]) -> list[str]:
        return [
            f"  {r['target']}  MAE {r['mae']:.4g}  RMSE {r['rmse']:.4g}  R2 {r['r2']:.3f}"
            f"  (predicting the mean: MAE {r['baseline_mae']:.4g})"
            for r in report.get("per_target") or []
        ]

    def predictions(self, pred: np.ndarray, plan: OutputPlan, k: int) -> list[dict[str, Any]]:
        return [
            {"values": {c: float(v) for c, v in zip(plan.classes, row, strict=True)}}
            for row in self.values(pred, plan)
        ]

    def summary(self, record: dict[str, Any]) -> str:
        return ", ".join(f"{c} {v:.4g}" for c, v in record["values"].items())

    def csv_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        return dict(record["values"])

    def picture(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan, path: Any,
                title: str) -> str | None:  # fmt: skip
        """Predicted (data units) against true values, one panel per target, y = x dashed."""
        from ..viz._canvas import add_axes_px, new_figure, save_png

        values, k = self.values(pred, plan), truth.shape[1]
        side, width, height = 300, 40 + k * 360, 390
        fig = new_figure(width, height)
        fig.text(0.5, 1 - 16 / height, title, ha="center", va="center", fontsize=10)
        for j in range(k):
            ax = add_axes_px(fig, 60 + j * 360, 40, side, side)
            t, v = truth[:, j], values[:, j]
            lo, hi = float(min(t.min(), v.min())), float(max(t.max(), v.max()))
            ax.plot([lo, hi], [lo, hi], "--", color="grey", linewidth=1)
            ax.scatter(t, v, s=8, alpha=0.5)
            ax.set_xlabel(f"true {plan.classes[j]}")
            ax.set_ylabel(f"predicted {plan.classes[j]}")
            mae = float(np.mean(np.abs(v - t)))
            ax.set_title(f"MAE {mae:.4g}", fontsize=9)
        return str(save_png(fig, path, width, height).path)


def unscaled(metric: Any, mean: np.ndarray, std: np.ndarray) -> Any:
    """``metric`` measured in the data's units (targets and outputs multiplied back)."""
    import keras

    class Unscaled(keras.metrics.Metric):
        def __init__(self) -> None:
            super().__init__(name=metric.name)
            self.inner = metric

        def update_state(self, y_true, y_pred, sample_weight=None):
            back = lambda v: keras.ops.cast(v, "float32") * std + mean  # noqa: E731
            self.inner.update_state(back(y_true), back(y_pred), sample_weight)

        def result(self):
            return self.inner.result()

        def reset_state(self):
            self.inner.reset_state()

    return Unscaled()


TASK = Regression()
