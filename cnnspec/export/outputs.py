"""The outputs an export carries: typed from the run's metadata, and the Keras graph with all of them.

A run's ``meta.json`` lists, per output (``outputs``, written by ``cnnspec.tasks.plan``), its
name, task, classes (class / label / target names), a multilabel output's threshold and a
regression output's mean and std: what ``predict`` needs to read the export without the spec.
A classification run written before tasks existed has no ``outputs``: its one output is
``output_name`` with ``class_names``.

An export keeps every one of those outputs. A model with one output keeps one tensor out (as
before); a model with several (a class head and a count head) answers ``{name: tensor}``, and
every format carries the names (SavedModel's signature, TFLite's signature, ONNX's outputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunError


@dataclass(frozen=True)
class OutputInfo:
    """One output of an exported model, as its metadata describes it."""

    name: str
    task: str = "classification"
    classes: tuple[str, ...] = ()  # class names, multilabel labels or regression targets
    threshold: float | None = None  # multilabel: a label is present at or above it
    mean: tuple[float, ...] | None = None  # regression: outputs * std + mean = data units
    std: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "task": self.task, "classes": list(self.classes)}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.mean is not None and self.std is not None:
            out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def parse(cls, entry: Any, where: str) -> OutputInfo:
        """An ``outputs`` entry of a metadata file; RunError naming ``where`` if malformed."""
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RunError(f"{where}: an output is an object with a name, received {entry!r:.80}")
        task, classes = entry.get("task", "classification"), entry.get("classes", [])
        if not isinstance(task, str) or not isinstance(classes, list):
            raise RunError(f"{where}: task must be a name and classes a list")
        threshold = entry.get("threshold")
        if threshold is not None and not _number(threshold, 0.0, 1.0):
            raise RunError(f"{where}: threshold must be a number in [0, 1], received {threshold!r}")
        mean, std = entry.get("mean"), entry.get("std")
        if (mean is None) != (std is None) or (
            mean is not None
            and not (
                isinstance(mean, list)
                and isinstance(std, list)
                and len(mean) == len(std) == len(classes)
                and all(_number(v) for v in mean)
                and all(_number(v, 0.0) and v > 0 for v in std)
            )
        ):
            raise RunError(
                f"{where}: mean and std are lists of finite numbers (std > 0), one per target "
                f"({len(classes)})"
            )
        return cls(
            name=entry["name"],
            task=task,
            classes=tuple(str(c) for c in classes),
            threshold=None if threshold is None else float(threshold),
            mean=None if mean is None else tuple(float(v) for v in mean),
            std=None if std is None else tuple(float(v) for v in std),
        )


def _number(value: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return ok and low <= value <= high


def outputs_of(meta: dict[str, Any], where: str = "metadata") -> tuple[OutputInfo, ...]:
    """Every output the metadata describes, main output first."""
    saved = meta.get("outputs")
    if saved is None:
        name = meta.get("output_name")
        classes = tuple(str(c) for c in meta.get("class_names") or [])
        return (OutputInfo(name if isinstance(name, str) else "output", classes=classes),)
    if not isinstance(saved, list) or not saved:
        raise RunError(f"{where}: outputs must be a non-empty list, received {saved!r:.80}")
    infos = tuple(OutputInfo.parse(e, f"{where}: outputs[{i}]") for i, e in enumerate(saved))
    names = [i.name for i in infos]
    if len(set(names)) != len(names):
        raise RunError(f"{where}: outputs names an output twice ({', '.join(names)})")
    return infos


def export_meta_outputs(meta: dict[str, Any], infos: tuple[OutputInfo, ...]) -> list[dict]:
    """The ``outputs`` an export's metadata carries: the typed fields over the run's entries
    (keys a newer cnnspec added to an entry are kept)."""
    saved = meta.get("outputs") if isinstance(meta.get("outputs"), list) else [{}] * len(infos)
    return [{**entry, **info.to_dict()} for entry, info in zip(saved, infos, strict=True)]


# --- the Keras graph ---------------------------------------------------------------------------


def named_outputs(model) -> dict[str, Any]:
    """The model's output tensors by name (a dict-output model's keys, else its output names)."""
    out = model.output
    if isinstance(out, dict):
        return dict(out)
    outs = list(out) if isinstance(out, list | tuple) else [out]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(outs):
        names = [f"output_{i}" for i in range(len(outs))]
    return dict(zip(names, outs, strict=True))


def export_graph(model, infos: tuple[OutputInfo, ...] | None, where: str = "the model"):
    """The model as one image in and its outputs out: one tensor for one output, else
    ``{name: tensor}`` for every output of ``infos`` (None: every output the model has)."""
    import keras

    if len(model.inputs) != 1:
        raise RunError(
            f"the model has {len(model.inputs)} inputs; cnnspec exports single-image models only"
        )
    tensors = named_outputs(model)
    if infos is None:
        chosen = tensors
    elif len(infos) == 1 and len(tensors) == 1:
        chosen = {infos[0].name: next(iter(tensors.values()))}
    else:
        missing = [i.name for i in infos if i.name not in tensors]
        if missing:
            raise RunError(
                f"{where}: the model has no output {', '.join(map(repr, missing))} that its "
                f"metadata names; it has {', '.join(tensors)}",
                hint="keep each model beside its own metadata",
            )
        chosen = {i.name: tensors[i.name] for i in infos}
    for info in infos or ():
        check_units(info, chosen[info.name], where)
    out = next(iter(chosen.values())) if len(chosen) == 1 else chosen
    return keras.Model(model.inputs[0], out, name=model.name)


#: Tasks whose last axis has one unit per class (a binary classifier or mask may use one).
ONE_UNIT_BINARY = {"classification": True, "segmentation": True, "multilabel": False,
                   "regression": False}  # fmt: skip


def check_units(info: OutputInfo, tensor: Any, where: str) -> None:
    """RunError when an output's last axis does not hold one unit per class / label / target."""
    units = tensor.shape[-1]
    if units is None or info.task not in ONE_UNIT_BINARY or not info.classes:
        return
    n = len(info.classes)
    if int(units) == n or (ONE_UNIT_BINARY[info.task] and int(units) == 1 and n == 2):
        return
    raise RunError(
        f"{where}: output '{info.name}' ({info.task}) has {int(units)} units but its metadata "
        f"names {n} ({', '.join(info.classes[:5])}{', ...' if n > 5 else ''})",
        hint="keep each model beside its own metadata",
    )


def load_export_source(path: str | Path):
    """``(model, meta, source)`` of a Keras model source, the model with every output its
    metadata names (``export_graph``); a classification run without ``outputs`` is loaded as
    ``modelio.load_run_model`` loads it, a ``.keras`` file without metadata keeps its outputs."""
    from ..digest import check_digest
    from ..modelio import find_model, load_keras_model, load_run_model, model_meta, read_meta

    source = find_model(path)
    meta = read_meta(source.meta_path) if source.meta_path is not None else None
    if source.format != "keras" or (meta is not None and "outputs" not in meta):
        return load_run_model(path)  # its checks and messages, unchanged
    if meta is not None:
        check_digest(source.path, source.meta_path, meta)
    model = load_keras_model(source.path)
    where = str(source.meta_path or source.path)
    model = export_graph(model, None if meta is None else outputs_of(meta, where), where)
    if meta is None:
        return model, model_meta(source, model), source
    shape = [int(d) if d is not None else None for d in model.inputs[0].shape[1:]]
    if shape != list(meta.get("input_shape") or []):
        raise RunError(f"{where}: input_shape {meta.get('input_shape')} does not match the "
                       f"model's {shape}")  # fmt: skip
    return model, meta, source
