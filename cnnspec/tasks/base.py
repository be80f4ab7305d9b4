"""What every task is made of: its names (pure), its head checks (pure) and its Keras parts.

A task is one object (``TASK`` in its module, listed in ``registry.py``) that owns, for one
output of a model:

- the label format its data must yield (``label_kind``, ``check_labels``);
- its losses (names as written in ``train.loss`` / ``heads.<h>.loss``) and the default;
- its metrics (names as in ``train.metrics`` and as keys in metrics.json) and the default;
- the checks on its head, run on the spec before TensorFlow (``head_problems``);
- the Keras loss, metrics and targets (imported lazily: the spec side never imports Keras);
- the end-of-run scores, what ``evaluate`` reports and what ``predict`` writes.

The pure half (names, checks) is imported by the spec package; keep it free of TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # annotations only: loading a spec never pays for numpy
    import numpy as np


@dataclass(frozen=True)
class OutputView:
    """What the spec says about one output, for the pure head checks."""

    name: str  # the output's name (the main output's layer, or the head's name)
    path: tuple  # where it is written in the spec: () for the main output, ("heads", h)
    shape: tuple[int, ...]  # its inferred shape (no batch axis)
    units: int | None  # units of the dense layer that makes it, else None
    activation: str | None  # its final activation (None: linear)
    loss: str  # the loss kind named for it
    metrics: tuple[str, ...]
    targets: tuple[str, ...] | None  # the label columns it learns (None: the data's labels)
    input_shape: tuple[int, ...] | None = None  # the model's input (segmentation: same size)

    @property
    def where(self) -> str:
        return "the main output" if not self.path else f"head '{self.name}'"


@dataclass(frozen=True)
class HeadIssue:
    """A problem of one output: ``key`` is the spec key it is about (loss, layers, ...)."""

    key: str
    message: str
    hint: str = ""


@dataclass
class OutputPlan:
    """One output of a training run, as the run side needs it (typed, travels between modules).

    ``columns``: the slice of the data's label vector this output learns (None: the whole
    integer label of a classification source). ``stats``: (mean, std) per column of a
    regression output, from the training split.
    """

    name: str
    task: Task
    loss: Any  # the LossSpec
    weight: float
    metrics: list[str]
    classes: list[str]  # class / label / target names of this output
    columns: list[int] | None = None
    stats: tuple[np.ndarray, np.ndarray] | None = None
    skipped: list[str] = field(default_factory=list)
    threshold: float = 0.5
    # evaluate/predict of a saved model: the label-table columns it reads, by name
    column_names: list[str] | None = None


class Task:
    """One task. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    description: ClassVar[str]
    label_kind: ClassVar[str]  # what the data must yield, for messages
    losses: ClassVar[tuple[str, ...]]
    default_loss: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    default_metrics: ClassVar[tuple[str, ...]]
    monitor_max: ClassVar[frozenset[str]] = frozenset()  # metrics where higher is better
    reads_masks: ClassVar[bool] = False  # its labels are a mask per image (segmentation)
    reads_table: ClassVar[bool] = False  # its labels are columns of a label table
    picture_stem: ClassVar[str | None] = None  # evaluate's picture: <stem>_<split>.png
    # cnnspec explain: the score a map explains, one per class (label, target) of the output
    explain_score: ClassVar[str] = "probability"
    explain_pooled: ClassVar[bool] = False  # a map per class, averaged over its positions

    # --- pure: names and checks ------------------------------------------------------------------
    def accepts_metric(self, name: str) -> bool:
        return name in self.metrics

    def metric_names(self) -> str:
        return ", ".join(self.metrics)

    def head_problems(self, out: OutputView) -> list[HeadIssue]:
        """Problems of ``out`` for this task (its loss is checked here too)."""
        if out.loss not in self.losses:
            return [self.loss_issue(out)]
        return []

    def loss_issue(self, out: OutputView) -> HeadIssue:
        return HeadIssue(
            "loss",
            f"loss {out.loss} does not fit the {self.name} task of {out.where}; "
            f"received loss={out.loss}",
            f"use {' or '.join(self.losses)}",
        )

    # --- data ----------------------------------------------------------------------------------
    def check_labels(self, y: np.ndarray, where: str) -> None:
        """RunError (exit 1) when ``y`` (one split's labels) is not this task's format."""

    def plan_masks(
        self, name: str, loss: Any, weight: float, metrics: list[str], data: Any,
        shape: tuple[int, ...], threshold: float,
    ) -> OutputPlan:  # fmt: skip
        """The plan of output ``name`` (of ``shape``) on data whose labels are masks, or of a
        task that reads masks: RunError unless the task reads masks (segmentation overrides)."""
        from ..errors import RunError

        raise RunError(
            f"data '{data.source}' has a mask per image, but the {self.name} output '{name}' "
            f"needs {self.label_kind}",
            hint="set task: segmentation (a head of the input's size, one channel per class)",
        )

    def label_stats(self, train: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Statistics of the training labels the targets are made with (regression: mean, std)."""
        return None

    # --- Keras (lazy) ------------------------------------------------------------------------------
    def keras_loss(self, loss: Any, reduction: str | None = "sum_over_batch_size") -> Any:
        raise NotImplementedError

    def keras_metrics(self, plan: OutputPlan, one_hot: bool) -> list[Any]:
        raise NotImplementedError

    def target(self, y: Any, plan: OutputPlan) -> Any:
        """Graph function: a batch of data labels -> what this output's loss wants."""
        raise NotImplementedError

    def active_metrics(self, metrics: list[str], plan: OutputPlan, monitored: set[str]):
        """(the metrics that mean something for this data, the ones left out)."""
        return list(metrics), []

    # --- scores (numpy): end of run, evaluate, predict ----------------------------------------
    def truth(self, labels: np.ndarray, plan: OutputPlan) -> np.ndarray:
        """The part of the data's labels this output learns (its columns of a label table)."""
        return labels if plan.columns is None else labels[:, plan.columns]

    def scores(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, float]:
        """The output's metrics on one split (``pred``: model outputs, ``truth``: its targets)."""
        raise NotImplementedError

    def report(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan) -> dict[str, Any]:
        """What ``evaluate`` reports beyond ``scores`` (per label / per target)."""
        return {}

    def describe(self, report: dict[str, Any]) -> list[str]:
        """Lines of ``report`` for the terminal."""
        return []

    def predictions(self, pred: np.ndarray, plan: OutputPlan, k: int) -> list[dict[str, Any]]:
        """One JSON-able record per row of model outputs (what ``predict`` writes)."""
        raise NotImplementedError

    def monitor_mode(self, metric: str) -> str:
        return "max" if metric in self.monitor_max else "min"

    # --- explain: which classes a map explains by default, and their scores ------------------
    def explain_order(self, scores: np.ndarray) -> list[int]:
        """The output's classes in the order ``explain --top`` takes them (best first)."""
        import numpy as np

        return [int(i) for i in np.argsort(-scores, kind="stable")]

    def explain_value(self, plan: OutputPlan, cls: int, score: float) -> float:
        """A score as reported (a regression target's in the data's units)."""
        return float(score)

    # --- a saved model: evaluate / predict through the CLI (tasks/saved.py, outputs_io.py) ----
    def evaluator(self, plans: list[OutputPlan]) -> Any:
        """``f(request) -> evaluation`` for a model whose main output is this task (default:
        every output scored on a label table, ``tasks/outputs_io.py``)."""
        from .outputs_io import evaluate_outputs

        return evaluate_outputs

    def predictor(self, plans: list[OutputPlan]) -> Any:
        """``f(request) -> records`` of ``predict`` for such a model (default: every output's
        ``predictions`` per image, written as CSV and JSON)."""
        from .outputs_io import predict_outputs

        return predict_outputs

    def saved_columns(self, entry: dict[str, Any], plan: OutputPlan) -> list[str] | None:
        """The label columns a saved output reads (meta.json ``outputs`` entry), None: none."""
        named = entry.get("columns")
        if isinstance(named, list) and named:
            return [str(c) for c in named]
        return list(plan.classes) if self.reads_table else None

    def truth_from(
        self, rows: np.ndarray, columns: list[str], plan: OutputPlan, where: str
    ) -> np.ndarray:
        """The output's targets among label-table ``rows`` whose columns are ``columns``:
        RunError (located at ``where``) for a missing column or labels of the wrong kind."""
        wanted = plan.column_names or []
        idx = column_indices(
            wanted, columns, where, f" for the model's {self.name} output '{plan.name}'",
            f"give {self.label_kind} with the columns {', '.join(wanted)}",
        )  # fmt: skip
        y = rows[:, idx]
        self.check_labels(y, where)
        return y

    def summary(self, record: dict[str, Any]) -> str:
        """One short text of a ``predictions`` record, for the terminal."""
        return ""

    def csv_fields(self, record: dict[str, Any]) -> dict[str, Any]:
        """A ``predictions`` record as flat CSV fields."""
        return {}

    def picture(self, pred: np.ndarray, truth: np.ndarray, plan: OutputPlan, path: Any,
                title: str) -> str | None:  # fmt: skip
        """Write evaluate's picture of this output to ``path``; None when it has none."""
        return None


def column_indices(wanted: list[str], columns: list[str], where: str, whose: str, hint: str):
    """The indices of the label columns ``wanted`` among the data's ``columns``; one located
    RunError naming every missing one and the columns the data has (training and a saved
    model's evaluate word it alike)."""
    from ..errors import RunError

    missing = [c for c in wanted if c not in columns]
    if missing:
        raise RunError(
            f"{where}: no label column {', '.join(map(repr, missing))}{whose}; "
            f"the data has {', '.join(c for c in columns if c)}",
            hint=hint,
        )
    return [columns.index(c) for c in wanted]
