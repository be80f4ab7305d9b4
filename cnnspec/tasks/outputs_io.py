"""``evaluate`` and ``predict`` of a model whose outputs read a label table: multilabel,
regression, a class column, or several heads on one trunk (each output's task does the work).

- ``evaluate_outputs``: every output's predictions over a split (streamed a batch of images at
  a time; the label rows are small), then per output its task's scores (the metrics.json
  names: the main output's as written, a head's prefixed ``count_mae``), its report (per
  label / per target / per class) and its picture (regression: predicted vs true).
- ``predict_outputs``: per image every output's record (multilabel: the labels above the
  threshold with their probabilities; regression: values in the data's units; a class head:
  its top-k), written to ``predictions.json`` and ``predictions.csv`` in the output folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from .base import OutputPlan
from .saved import OutputsRuntime, open_outputs, truths, where_of


def key_of(plans: list[OutputPlan], plan: OutputPlan, name: str) -> str:
    """A score's key: the main output's as written, a head's prefixed with its name."""
    return name if plan is plans[0] else f"{plan.name}_{name}"


@dataclass
class TaskEvaluation:
    """Scores of every output of a model on one split, with each task's report."""

    model: str
    data: str
    split: str
    n: int
    task: str  # the main output's task
    scores: dict[str, float]  # metrics.json names: f1, map, count_mae, ...
    outputs: dict[str, dict[str, Any]]  # output -> {"task", "scores", report...}
    pictures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "data": self.data, "split": self.split, "n": self.n,
                "task": self.task, **self.scores, "outputs": self.outputs,
                "pictures": self.pictures}  # fmt: skip

    def lines(self) -> list[str]:
        """The terminal report: a header, then each output's scores and table."""
        from .registry import get

        out = [f"{self.model} on {self.data} [{self.split}]: {self.n} images"]
        for name, rep in self.outputs.items():
            task = get(rep["task"])
            shown = ", ".join(f"{k} {v:.4f}" for k, v in rep["scores"].items())
            out.append(f"{name} ({task.name}): {shown}")
            out += task.describe(rep)
        out += [f"picture: {p}" for p in self.pictures]
        return out


def stream(runtime, data, names: list[str], input_shape, batch: int):
    """({output: predictions}, label rows) of the splits ``names``, a batch at a time."""
    from ..data.images import read_errors
    from ..data.progress import progress

    preds: dict[str, list[np.ndarray]] = {n: [] for n in runtime.names}
    rows: list[np.ndarray] = []
    total = sum(int(data.sizes.get(n, 0)) for n in names) or None
    with progress("evaluating", total) as bar:
        for name in names:
            try:
                for x, y in data.split(name).batch(batch).prefetch(2).as_numpy_iterator():
                    for n, v in runtime.predict(np.asarray(x, np.float32)).items():
                        preds[n].append(v)
                    rows.append(np.asarray(y, np.float32).reshape(len(x), -1))
                    bar.advance(len(x))
            except read_errors() as exc:
                raise data.read_failure(exc, input_shape, f"reading the {name} split") from None
    if not rows:
        return {}, np.zeros((0, 0), np.float32)
    return {n: np.concatenate(v) for n, v in preds.items()}, np.concatenate(rows)


def evaluate_outputs(req: Any) -> TaskEvaluation:
    """``evaluate`` of a label-table model (``req``: ``cnnspec.evaluate.EvalRequest``)."""
    from ..data import load_data
    from ..data.batches import split_names
    from ..modelio import check_model_source, find_model
    from ..predict import BATCH

    plans = req.plans
    _, meta = check_model_source(req.model)  # the data is checked before the model is loaded
    check_manifest_columns(plans, req.data_source)
    data = load_data(req.data_source, meta["input_shape"], table=True)
    where = where_of(req.data_source, data)
    if data.masks:
        raise RunError(
            f"{where}: the data has a mask per image, but the model's {plans[0].task.name} "
            f"output '{plans[0].name}' needs {plans[0].task.label_kind}",
            hint="evaluate it on data of its own task (--data)",
        )
    names = split_names(data, req.split)
    width = len(getattr(data, "columns", None) or [])
    truths(plans, data, np.zeros((1, width), np.float32), where)  # columns: before predicting
    runtime, meta = open_outputs(req.model, plans)
    preds, rows = stream(runtime, data, names, meta["input_shape"], BATCH)
    if not len(rows):
        raise RunError(f"data '{data.source}' has no images in split '{req.split}'")
    scores: dict[str, float] = {}
    outputs: dict[str, dict[str, Any]] = {}
    pictures: list[str] = []
    for plan, truth in zip(plans, truths(plans, data, rows, where), strict=True):
        pred = preds[plan.name]
        got = plan.task.scores(pred, truth, plan)
        scores.update({key_of(plans, plan, k): v for k, v in got.items()})
        outputs[plan.name] = {"task": plan.task.name, "scores": got,
                              **plan.task.report(pred, truth, plan)}  # fmt: skip
        path = picture_path(req.png, plans, plan, req.split)
        title = f"{meta.get('name', 'model')} {plan.name} on {data.source} [{req.split}]"
        drawn = None if path is None else plan.task.picture(pred, truth, plan, path, title)
        if drawn:
            pictures.append(drawn)
    return TaskEvaluation(
        model=str(find_model(req.model).path), data=data.source, split=req.split, n=len(rows),
        task=plans[0].task.name, scores=scores, outputs=outputs, pictures=pictures,
    )  # fmt: skip


def check_manifest_columns(plans: list[OutputPlan], source: Any) -> None:
    """A label-table CSV manifest's columns checked against the outputs from its rows alone,
    before any image pipeline is built (a refusal in milliseconds, located at its header)."""
    from types import SimpleNamespace

    from ..data.tables import read_table_manifest

    path = Path(str(source)) if isinstance(source, str | Path) else None
    if path is None or path.suffix.lower() != ".csv" or not path.is_file():
        return
    try:
        columns, _ = read_table_manifest(path)
    except RunError:
        return  # not a label table (a mask manifest...): load_data says what it is
    found = SimpleNamespace(columns=columns, source=str(source))
    truths(plans, found, np.zeros((1, len(columns)), np.float32), where_of(str(source)))


def picture_path(png: Path | None, plans: list[OutputPlan], plan: OutputPlan, split: str):
    """The main output's picture is ``png``; a head's goes beside it, named by its task and
    with the main picture's prefix (an export's ``two.confusion_all.png`` ->
    ``two.pred_vs_true_all_ink.png``; a run's ``confusion_all.png`` -> ``pred_vs_true_all_ink.png``)."""
    if png is None or plan.task.picture_stem is None:
        return None
    if plan is plans[0]:
        return Path(png)
    own = f"{plan.task.picture_stem}_{split}_{plan.name}.png"
    main = f"{plans[0].task.picture_stem or 'confusion'}_{split}.png"
    name = Path(png).name
    prefix = name[: -len(main)] if name.endswith(main) else ""
    return Path(png).parent / f"{prefix}{own}"


# --- predict ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputsPrediction:
    """Every output's record for one image (``outputs``: name -> its task's record)."""

    file: str
    outputs: dict[str, dict[str, Any]]
    text: str = ""  # one short line for the terminal
    saved: str = ""  # the predictions.csv it was written to

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "outputs": self.outputs}


@dataclass(frozen=True)
class ArrayMask:
    """A segmentation model's mask of one image given as an array (``cnnspec.predict``):
    class indices at the model's input size, and each class's share of the pixels."""

    file: str  # inputs[i]
    mask: np.ndarray  # (H, W) int64 class indices
    pixels: dict[str, float]

    @classmethod
    def of(cls, name: str, mask: np.ndarray, classes: list[str]) -> ArrayMask:
        counts = np.bincount(mask.reshape(-1), minlength=len(classes))
        share = {classes[i] if i < len(classes) else str(i): float(c / mask.size)
                 for i, c in enumerate(counts) if c}  # fmt: skip
        return cls(name, mask, share)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "pixels": self.pixels, "mask": self.mask.tolist()}


def predict_outputs(req: Any) -> list[OutputsPrediction]:
    """``predict`` of a label-table model (``req``: ``cnnspec.predict.PredictRequest``);
    ``predictions.json`` and ``predictions.csv`` written to ``req.out``."""
    from ..data import load_images
    from ..data.progress import progress
    from ..predict import BATCH

    if req.tile:
        raise RunError("--tile predicts a segmentation model's masks; this model does not")
    plans = req.plans
    runtime, meta = open_outputs(req.model, plans)
    found: list[OutputsPrediction] = []
    with progress("predicting", len(req.files)) as bar:
        for i in range(0, len(req.files), BATCH):
            images, names = load_images(req.files[i : i + BATCH], meta["input_shape"])
            csv_path = str(Path(req.out) / "predictions.csv")
            found += records_of(runtime, plans, images, names, req.k, csv_path)
            bar.advance(len(names))
    write_predictions(found, plans, Path(req.out))
    return found


def records_of(
    runtime: OutputsRuntime, plans: list[OutputPlan], images: np.ndarray, names: list[Any],
    k: int, saved: str = "",
) -> list[OutputsPrediction]:  # fmt: skip
    """Every output's record of each image of one float32 batch (the same records the CLI's
    ``predictions.json`` holds; also ``cnnspec.predict`` of an array)."""
    preds = runtime.predict(images)
    records = {p.name: p.task.predictions(preds[p.name], p, k) for p in plans}
    found = []
    for j, name in enumerate(names):
        outs = {p.name: records[p.name][j] for p in plans}
        text = "  ".join(
            (f"{p.name}: " if len(plans) > 1 else "") + p.task.summary(outs[p.name]) for p in plans
        )
        found.append(OutputsPrediction(str(name), outs, text, saved))
    return found


def csv_text(found: list[OutputsPrediction], plans: list[OutputPlan]) -> str:
    """One row per image: its file, then each output's fields (a head's prefixed by its name
    unless the field is the head's own name)."""
    rows = []
    for f in found:
        row: dict[str, Any] = {"file": f.file}
        for p in plans:
            for k, v in p.task.csv_fields(f.outputs[p.name]).items():
                row[k if p is plans[0] or k == p.name else f"{p.name}_{k}"] = v
        rows.append(row)
    header = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_predictions(found: list[OutputsPrediction], plans: list[OutputPlan], out: Path) -> None:
    from ..outpaths import write_bytes_atomic

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{out}: cannot create the predictions folder: {exc.strerror}") from None
    body = json.dumps([f.to_dict() for f in found], indent=2)
    write_bytes_atomic(out / "predictions.json", body.encode())
    write_bytes_atomic(out / "predictions.csv", csv_text(found, plans).encode())
