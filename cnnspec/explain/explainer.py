"""``cnnspec explain``: maps for every input, method and explained class; files and a report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from . import checks, drawing
from .registry import Method, Options, get_method, method_names
from .source import (
    Explainable,
    class_index,
    expand_files,
    layer_for_gradcam,
    open_explainable,
    read_inputs,
)

MAX_INPUTS = 1000
SHEET = "sheet.png"


@dataclass(frozen=True)
class Request:
    """What to explain: methods, which classes, settings, and the checks to run."""

    methods: tuple[str, ...] = ()  #: empty: every method the model source allows
    target_class: str | None = None  #: a class name or index (default: the predicted class)
    top: int = 1  #: explain the top-k predicted classes (when no class is given)
    options: Options = field(default_factory=Options)
    sanity: bool = False
    sanity_layers: int = checks.DEFAULT_RANDOMISED
    deletion: bool = False
    write: bool = True  #: write overlays, .npy maps and the sheet
    output: str | None = None  #: which output of a several-output model (default: the main)


@dataclass
class Explained:
    """One input's maps and what was measured. ``probabilities``: the output's score per class
    (a probability; a segmentation class's pixel share; a regression target's value), as the
    maps explain them; ``value``: the predicted class's, as reported."""

    file: str
    predicted: int
    probabilities: np.ndarray
    input: np.ndarray | None = None  #: kept for the contact sheet's rows only
    maps: list[dict[str, Any]] = field(default_factory=list)  #: one per method and class
    value: float | None = None

    def to_dict(self, class_names: list[str], score: str = "probability") -> dict[str, Any]:
        p = int(self.predicted)
        value = self.value if self.value is not None else float(self.probabilities[p])
        return {
            "file": self.file,
            "predicted": {"class": class_names[p], "index": p, score: value},
            "explanations": [{k: v for k, v in m.items() if k != "array"} for m in self.maps],
        }


@dataclass
class Report:
    model: str
    format: str
    class_names: list[str]
    inputs: list[Explained]
    sheet: Path | None = None
    output: str | None = None  #: the explained output's name
    task: str = "classification"
    score: str = "probability"  #: what a class's number is (Task.explain_score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "format": self.format,
            "output": self.output,
            "task": self.task,
            "score": self.score,
            "sheet": str(self.sheet) if self.sheet else None,
            "inputs": [e.to_dict(self.class_names, self.score) for e in self.inputs],
        }


def chosen_methods(target: Explainable, names: tuple[str, ...]) -> list[Method]:
    """The requested methods (default: all the source allows); refuse gradients on exports."""
    methods = [get_method(n) for n in (names or method_names())]
    if not names and not target.has_gradients:
        methods = [m for m in methods if not m.needs_gradients]
    for m in methods:
        if m.needs_gradients and not target.has_gradients:
            raise RunError(
                f"{target.path}: --method {m.name} needs gradients, and a {target.format} model "
                "runs forward only",
                hint="use --method occlusion, or pass the run directory / .keras file",
            )
    return methods


def classes_for(target: Explainable, probs: np.ndarray, req: Request) -> list[int]:
    """``--class``, else the top classes in the output's task's order."""
    if req.target_class is not None:
        return [class_index(req.target_class, target.class_names)]
    return target.task.explain_order(probs)[: req.top]


def explain_files(
    model: str | Path,
    inputs: list[str | Path],
    req: Request,
    out_dir: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Report:
    """Explain image / ``.npy`` files with a run, ``.keras`` file or export (see the CLI)."""
    target, methods = open_target(model, req)
    files = expand_files(inputs)
    check_count(len(files))
    items = (
        (str(f), stem, lambda f=f: read_inputs([f], target.input_shape)[0])
        for f, stem in zip(files, unique_stems(files), strict=True)
    )
    return explain_all(target, methods, items, req, out_dir, echo)


def explain_arrays(
    model: str | Path,
    x: np.ndarray,
    req: Request,
    out_dir: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> Report:
    """Explain a float32 batch already in the model's input shape (named ``inputs[i]``)."""
    check_count(len(x))
    target, methods = open_target(model, req)
    items = ((f"inputs[{i}]", f"input{i:03d}", lambda i=i: x[i]) for i in range(len(x)))
    return explain_all(target, methods, items, req, out_dir, echo)


def check_count(n: int) -> None:
    """RunError when more inputs are given than one explain call takes."""
    if n > MAX_INPUTS:
        raise RunError(f"{n} inputs given; explain takes at most {MAX_INPUTS} at once")


def split_methods(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Method names as given (``--method a,b --method c`` or ``method=["a,b", "c"]``)."""
    values = [values] if isinstance(values, str) else list(values or [])
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def open_target(model: str | Path, req: Request) -> tuple[Explainable, list[Method]]:
    """The model to explain and the chosen methods, with every request setting checked before
    any work."""
    req.options.check()
    target = open_explainable(model, req.output)
    if not 1 <= req.top <= len(target.class_names):
        raise RunError(f"--top must be in [1, {len(target.class_names)}], received {req.top}")
    methods = chosen_methods(target, req.methods)
    if any(m.name == "gradcam" for m in methods):
        layer_for_gradcam(target, req.options.layer)  # a bad --layer fails before any work
    return target, methods


def explain_all(
    target: Explainable,
    methods: list[Method],
    items: Any,
    req: Request,
    out_dir: Path | None,
    echo: Callable[[str], None] | None,
) -> Report:
    """Every input of ``items`` ((name, file stem, () -> input array)) explained."""
    random_target = None
    if req.sanity:
        random_target, names = checks.randomised(target, req.sanity_layers)
        if echo:
            echo(f"sanity: randomised {', '.join(names)}")
    results = []
    for i, (name, stem, read) in enumerate(items):
        x = read()
        done = explain_one(target, x, name, stem, methods, req, out_dir, random_target)
        if i < drawing.MAX_SHEET_ROWS:  # the sheet's rows: keep the input and its maps
            done.input = x
        elif out_dir is not None:  # on disk as .npy; without a folder the caller gets them
            for m in done.maps:
                m.pop("array")
        results.append(done)
    plan = target.plan
    report = Report(
        str(target.path), target.format, target.class_names, results,
        output=None if plan is None else plan.name, task=target.task.name,
        score=target.task.explain_score,
    )  # fmt: skip
    if req.write and out_dir is not None:
        report.sheet = write_sheet(out_dir / SHEET, results)
    return report


def explain_one(
    target: Explainable,
    x: np.ndarray,
    file: str,
    stem: str,
    methods: list[Method],
    req: Request,
    out_dir: Path | None,
    random_target: Explainable | None,
) -> Explained:
    """Every method's map for every explained class of one input."""
    probs = target.forward(x[None])[0]
    task, score = target.task, target.task.explain_score
    top = task.explain_order(probs)[0]
    result = Explained(file, top, probs, value=task.explain_value(target.plan, top, probs[top]))
    for rank, cls in enumerate(classes_for(target, probs, req)):
        for m in methods:
            att = m.explain(target, x, cls, req.options)
            entry: dict[str, Any] = {
                "method": m.name,
                "class": target.class_names[cls],
                "index": cls,
                "rank": rank,
                score: task.explain_value(target.plan, cls, probs[cls]),
                "peak": att.peak,
                **att.extras,
            }
            if req.deletion:
                entry["deletion"] = checks.deletion_curve(
                    target, x, att.map, cls, req.options.fill
                ).to_dict()
            if random_target is not None:
                rho = checks.spearman(att.map, m.explain(random_target, x, cls, req.options).map)
                entry["sanity"] = {"spearman": rho, "survives": rho >= checks.SURVIVES}
            if req.write and out_dir is not None:
                entry.update(write_map(out_dir, stem, m.name, cls, x, att, target.class_names))
            entry["array"] = att.map
            result.maps.append(entry)
    return result


def write_map(out_dir, stem, method, cls, x, att, class_names) -> dict[str, str]:
    """The raw map as .npy and its overlay PNG, both written atomically."""
    from ..outpaths import atomic_path

    base = out_dir / f"{stem}_{method}_c{cls}"
    npy = base.with_suffix(".npy")
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, att.map.astype(np.float32))
    title = f"{stem}: {method}, class {class_names[cls]}, peak {att.peak}"
    png = drawing.overlay(base.with_suffix(".png"), x, att.map, att.peak, title)
    return {"map": str(npy), "overlay": str(png.path)}


def write_sheet(path: Path, results: list[Explained]) -> Path:
    """One contact sheet: a row per input (the first MAX_SHEET_ROWS), a column per map."""
    keys: list[tuple[str, int]] = []
    for r in results:
        for m in r.maps:
            if (m["method"], m["rank"]) not in keys:
                keys.append((m["method"], m["rank"]))
    multi = any(rank for _, rank in keys)
    columns = [f"{name} #{rank + 1}" if multi else name for name, rank in keys]
    rows, cells = [], []
    for r in results[: drawing.MAX_SHEET_ROWS]:
        rows.append((Path(r.file).name, r.input))
        by_key = {(m["method"], m["rank"]): (m["array"], m["peak"]) for m in r.maps}
        cells.append([by_key.get(k) for k in keys])
    return drawing.sheet(path, rows, columns, cells).path


def unique_stems(files: list[Path]) -> list[str]:
    """File stems, numbered where two inputs share one."""
    stems = [Path(f).stem for f in files]
    if len(set(stems)) == len(stems):
        return stems
    return [f"{i:03d}_{s}" for i, s in enumerate(stems)]
