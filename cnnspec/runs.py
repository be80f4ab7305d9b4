"""Find and compare run directories: ``cnnspec runs`` and ``cnnspec diff`` (pure, no TensorFlow).

A run directory is any folder holding the ``spec.yaml`` and ``meta.json`` that ``cnnspec train``
writes first (``runs/<name>/<timestamp>/``, a search's ``trials/<n>/``). Everything here reads
those files and ``metrics.json`` / ``history.csv``; a run killed before its end still shows (as
``incomplete``, with the epochs its history has).

``diff`` compares what two runs *were*: their resolved specs as layer rows (name, kind,
notation, output shape, params: the same pure graph ``cnnspec summary`` prints), the recipe as
flattened keys with every default filled in, then data, hardware and results.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import RunError, SpecError
from .train.rundir import HISTORY, META, METRICS, SPEC, read_history, read_json

#: Folders inside a run that never hold another run (and may be large).
_SKIP = {"checkpoints", "logs", "plots", "__pycache__", ".git"}
#: Deeper than this below DIR no run is looked for (runs/<name>/<stamp>, searches/x/trials/<n>).
MAX_DEPTH = 6


# --- finding runs ------------------------------------------------------------------------------


def is_run(path: Path) -> bool:
    """Whether ``path`` is a run directory (``cnnspec train`` wrote its spec.yaml and meta.json)."""
    return (path / SPEC).is_file() and (path / META).is_file()


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory under ``root`` (``root`` itself if it is one), in path order."""
    root = Path(root)
    if not root.is_dir():
        raise RunError(f"{root} is not a folder", hint="e.g. cnnspec runs runs/")
    found = []
    base_depth = len(root.parts)
    for here, dirs, _files in os.walk(root):
        path = Path(here)
        if is_run(path):
            found.append(path)
        depth = len(path.parts) - base_depth
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and depth < MAX_DEPTH)
    return sorted(found)


def resolve_run(text: str | Path) -> Path:
    """A run named on the command line: a run directory, or ``runs/<name>`` (its newest run)."""
    path = Path(text)
    if is_run(path):
        return path
    if path.is_dir():
        runs = find_runs(path)
        if runs:
            return max(runs, key=lambda p: (_created(p), str(p)))
    raise RunError(
        f"{text} is not a run directory (no {SPEC} and {META} in it or below it)",
        hint="name a folder that cnnspec train wrote, e.g. runs/lenet5/20250101-120000",
    )


# --- the table ---------------------------------------------------------------------------------


@dataclass
class RunInfo:
    """What ``cnnspec runs`` shows of one run, read from its files."""

    path: Path
    run: str  # the path relative to the folder listed
    name: str
    created: str
    data: str
    status: str
    epochs_done: int
    epochs: int | None
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    images_per_s: float | None = None
    wall_time_s: float | None = None
    hardware: dict[str, Any] = field(default_factory=dict)

    def metric(self, key: str) -> float | None:
        """``val_accuracy`` -> results['val']['accuracy'] (``accuracy``: the train split's)."""
        split, _, name = key.partition("_")
        if split not in ("train", "val", "test") or not name:
            split, name = "train", key
        value = self.results.get(split, {}).get(name)
        return float(value) if isinstance(value, int | float) else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "path": str(self.path),
            "name": self.name,
            "created": self.created,
            "data": self.data,
            "status": self.status,
            "epochs_done": self.epochs_done,
            "epochs": self.epochs,
            "results": self.results,
            "images_per_s": self.images_per_s,
            "wall_time_s": self.wall_time_s,
            "device": self.hardware.get("device"),
        }


def _created(path: Path) -> str:
    meta = read_json(path / META) or {}
    created = meta.get("created")
    if isinstance(created, str):
        return created
    return datetime.fromtimestamp((path / META).stat().st_mtime).strftime("%Y-%m-%dT%H:%M:%S")


def read_run(path: Path, root: Path | None = None) -> RunInfo:
    """The run at ``path`` as a table row (``root``: the folder its name is relative to)."""
    meta = read_json(path / META) or {}
    metrics = read_json(path / METRICS)
    history = read_history(path / HISTORY) if metrics is None else []
    try:
        rel = str(path.relative_to(root)) if root is not None else str(path)
    except ValueError:
        rel = str(path)
    if metrics is not None:
        results = {s: metrics.get(s) or {} for s in ("train", "val", "test")}
        status = str(metrics.get("status", "?"))
        done = int(metrics.get("epochs_done", 0) or 0)
        epochs = metrics.get("epochs")
    else:  # killed (or still running): what its history has
        last = history[-1] if history else {}
        results = {
            "train": {k: v for k, v in last.items() if k != "epoch" and not k.startswith("val_")},
            "val": {k[4:]: v for k, v in last.items() if k.startswith("val_")},
        }
        status, done, epochs = "incomplete", len(history), None
    return RunInfo(
        path=path,
        run=rel if rel != "." else path.name,
        name=str(meta.get("name", path.parent.name)),
        created=_created(path),
        data=str(meta.get("data", "?")),
        status=status,
        epochs_done=done,
        epochs=epochs,
        results={k: v for k, v in results.items() if isinstance(v, dict)},
        images_per_s=_number((metrics or {}).get("images_per_s")),
        wall_time_s=_number((metrics or {}).get("wall_time_s")),
        hardware=meta.get("hardware") or {},
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Column:
    """One column of ``cnnspec runs``: its header, how to read it, how to show it."""

    key: str
    header: str
    value: Callable[[RunInfo], Any]
    show: Callable[[Any], str] = str
    numeric: bool = False


def _fmt_metric(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.4f}"


def _fmt_rate(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f}"


#: The columns, in order; ``--sort`` takes any of their keys.
COLUMNS: tuple[Column, ...] = (
    Column("run", "run", lambda r: r.run),
    Column("date", "date", lambda r: r.created, lambda v: v[:19].replace("T", " ")),
    Column("spec", "spec", lambda r: r.name),
    Column("data", "data", lambda r: r.data),
    Column("status", "status", lambda r: r.status),
    Column("epochs", "epochs", lambda r: r.epochs_done, numeric=True),
    Column("train_accuracy", "train acc", lambda r: r.metric("train_accuracy"), _fmt_metric, True),
    Column("val_accuracy", "val acc", lambda r: r.metric("val_accuracy"), _fmt_metric, True),
    Column("val_loss", "val loss", lambda r: r.metric("val_loss"), _fmt_metric, True),
    Column("test_accuracy", "test acc", lambda r: r.metric("test_accuracy"), _fmt_metric, True),
    Column("images_per_s", "images/s", lambda r: r.images_per_s, _fmt_rate, True),
)
SORT_KEYS = tuple(c.key for c in COLUMNS)


def list_runs(root: str | Path, sort: str = "date", reverse: bool = False) -> list[RunInfo]:
    """The runs under ``root`` sorted by a column key (missing values last either way)."""
    column = next((c for c in COLUMNS if c.key == sort), None)
    if column is None:
        from .errors import did_you_mean

        guess = did_you_mean(sort, SORT_KEYS)
        raise RunError(
            f"--sort: unknown column '{sort}'" + (f"; {guess}" if guess else ""),
            hint=f"sort by one of {', '.join(SORT_KEYS)}",
        )
    root = Path(root)
    runs = [read_run(p, root) for p in find_runs(root)]
    present = [r for r in runs if column.value(r) is not None]
    missing = [r for r in runs if column.value(r) is None]
    present.sort(key=lambda r: (column.value(r), r.run), reverse=reverse)
    return present + missing


# --- diff --------------------------------------------------------------------------------------

#: The fields of a layer row, as ``diff`` shows them.
LAYER_FIELDS = ("kind", "notation", "shape", "params")


def layer_rows(spec: Any) -> list[dict[str, Any]]:
    """One row per layer of the spec's graph (main graph and heads): what ``diff`` compares."""
    from .shapes import fmt
    from .spec.graph import notation

    g = spec.graph
    return [
        {
            "name": n.name,
            "kind": n.kind,
            "notation": notation(g, n),
            "shape": fmt(n.shape),
            "params": n.params,
        }
        for n in g.nodes.values()
    ]


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings/lists as dotted keys: {'optimizer': {'adam': {'lr': 0.1}}} ->
    {'optimizer.adam.lr': 0.1}; list items as ``key[i]``; empty containers kept as values."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list | tuple) and value:
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


@dataclass
class Side:
    """One run as ``diff`` sees it."""

    path: Path
    layers: list[dict[str, Any]] | None  # None: its spec.yaml no longer loads
    totals: dict[str, int]
    recipe: dict[str, Any]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    problem: str | None = None


def read_side(path: Path) -> Side:
    """Load a run's resolved spec (pure loader) and its meta/metrics files."""
    import yaml

    from .spec import load_spec

    meta = read_json(path / META) or {}
    metrics = read_json(path / METRICS) or {}
    try:
        spec = load_spec(path / SPEC)
    except SpecError as exc:  # written by an older cnnspec: compare the recipe as written
        raw = yaml.safe_load((path / SPEC).read_text()) or {}
        train = raw.get("train", {}) if isinstance(raw, dict) else {}
        first = str(exc).splitlines()[0]
        return Side(path, None, {}, flatten(train), meta, metrics, problem=first)
    g = spec.graph
    recipe = spec.train.model_dump(mode="json", exclude_none=True, by_alias=True)
    totals = {"params": g.total_params, "MACs": g.total_macs}
    return Side(path, layer_rows(spec), totals, flatten(recipe), meta, metrics)


@dataclass
class RunDiff:
    """What differs between two runs, section by section (empty sections: the same)."""

    a: Path
    b: Path
    layers: list[dict[str, Any]] = field(default_factory=list)  # op: ~ changed, - removed, + added
    same_layers: int = 0
    totals: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    recipe: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    data: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    hardware: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    results: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        pairs = lambda d: {k: {"a": a, "b": b} for k, (a, b) in d.items()}  # noqa: E731
        return {
            "a": str(self.a),
            "b": str(self.b),
            "layers": self.layers,
            "same_layers": self.same_layers,
            "totals": pairs(self.totals),
            "recipe": pairs(self.recipe),
            "data": pairs(self.data),
            "hardware": pairs(self.hardware),
            "results": pairs(self.results),
            "notes": self.notes,
        }


def _changed(a: dict[str, Any], b: dict[str, Any], keys: Iterable[str] | None = None):
    keys = list(keys) if keys is not None else list(dict.fromkeys([*a, *b]))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def diff_layers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict], int]:
    """Align two layer lists and return (changes, unchanged count).

    Layers are aligned by what they are (kind and notation), not by name or shape: a layer
    inserted renumbers the names after it and changes the shapes downstream, and neither
    should make every later layer look replaced. Inside a replaced stretch, layers of the
    same kind pair up (a changed notation); the rest are added or removed.
    """
    what = lambda row: (row["kind"], row["notation"])  # noqa: E731
    out: list[dict[str, Any]] = []
    same = 0
    for op, i1, i2, j1, j2 in _opcodes([what(r) for r in a], [what(r) for r in b]):
        if op == "equal":
            for x, y in zip(a[i1:i2], b[j1:j2], strict=True):
                if _fields(x, y):
                    out.append({"op": "~", "a": x, "b": y, "fields": _fields(x, y)})
                else:
                    same += 1
            continue
        left, right = a[i1:i2], b[j1:j2]
        for op2, k1, k2, l1, l2 in _opcodes([r["kind"] for r in left], [r["kind"] for r in right]):
            if op2 == "equal":
                for x, y in zip(left[k1:k2], right[l1:l2], strict=True):
                    out.append({"op": "~", "a": x, "b": y, "fields": _fields(x, y)})
                continue
            out += [{"op": "-", "a": x} for x in left[k1:k2]]
            out += [{"op": "+", "b": y} for y in right[l1:l2]]
    return out, same


def _opcodes(a: list[Any], b: list[Any]) -> list[tuple[str, int, int, int, int]]:
    return difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()


def _fields(x: dict[str, Any], y: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {f: (x[f], y[f]) for f in LAYER_FIELDS if x[f] != y[f]}


#: meta.json keys ``diff`` compares as the data section.
DATA_KEYS = ("data", "num_classes", "class_names", "input_shape", "preprocess")
#: Results compared: the final metrics of each split, then the run's figures.
RESULT_KEYS = ("status", "epochs_done", "images_per_s", "train_time_s")


def diff_runs(a: str | Path, b: str | Path) -> RunDiff:
    """Compare two runs (directories, or ``runs/<name>`` for the newest run in it)."""
    pa, pb = resolve_run(a), resolve_run(b)
    sa, sb = read_side(pa), read_side(pb)
    out = RunDiff(pa, pb)
    for side in (sa, sb):
        if side.problem:
            out.notes.append(f"{side.path}: spec.yaml no longer loads ({side.problem})")
    if sa.layers is not None and sb.layers is not None:
        out.layers, out.same_layers = diff_layers(sa.layers, sb.layers)
        out.totals = _changed(sa.totals, sb.totals)
    out.recipe = _changed(sa.recipe, sb.recipe)
    out.data = _changed(sa.meta, sb.meta, DATA_KEYS)
    out.hardware = _changed(sa.meta.get("hardware") or {}, sb.meta.get("hardware") or {})
    results_a = {
        **flatten({s: sa.metrics.get(s) or {} for s in ("train", "val", "test")}),
        **{k: sa.metrics.get(k) for k in RESULT_KEYS},
    }
    results_b = {
        **flatten({s: sb.metrics.get(s) or {} for s in ("train", "val", "test")}),
        **{k: sb.metrics.get(k) for k in RESULT_KEYS},
    }
    out.results = _changed(results_a, results_b)
    return out


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _delta(a: Any, b: Any) -> str:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
    if not numbers:
        return ""
    d = b - a
    return f"  ({'+' if d >= 0 else ''}{_show(d)})"


def render_diff(d: RunDiff) -> list[str]:
    """The diff as text lines: section headers, then one line per difference."""
    lines = [f"a: {d.a}", f"b: {d.b}"]
    lines += [f"note: {n}" for n in d.notes]
    if d.layers or d.totals:
        lines.append(f"layers: {d.same_layers} same, {len(d.layers)} differ")
        width = max(len(row.get("a", row.get("b"))["name"]) for row in d.layers) if d.layers else 0
        for row in d.layers:
            lines.append("  " + _layer_line(row, width))
        for k, (x, y) in d.totals.items():
            lines.append(f"  total {k}: {_show(x)} -> {_show(y)}{_delta(x, y)}")
    else:
        lines.append(f"layers: the same ({d.same_layers} layers)")
    for title, pairs in (
        ("recipe", d.recipe),
        ("data", d.data),
        ("hardware", d.hardware),
        ("results", d.results),
    ):
        if not pairs:
            lines.append(f"{title}: the same")
            continue
        lines.append(f"{title}:")
        width = max(len(k) for k in pairs)
        for k, (x, y) in pairs.items():
            lines.append(f"  {k:<{width}}  {_show(x)} -> {_show(y)}{_delta(x, y)}")
    return lines


def _layer_line(row: dict[str, Any], width: int) -> str:
    def cells(r: dict[str, Any]) -> str:
        notation = f": {r['notation']}" if r["notation"] else ""
        params = f", {r['params']:,} params" if r["params"] else ""
        return f"{r['kind']}{notation}, output {r['shape']}{params}"

    if row["op"] != "~":
        r = row["a"] if row["op"] == "-" else row["b"]
        return f"{row['op']} {r['name']:<{width}}  {cells(r)}"
    a, b, fields = row["a"], row["b"], row["fields"]
    name = a["name"] if a["name"] == b["name"] else f"{a['name']} / {b['name']}"
    kind = f"{a['kind']} -> {b['kind']}" if "kind" in fields else a["kind"]
    parts = [f"{kind}: {a['notation'] or '-'} -> {b['notation'] or '-'}"]
    if "notation" not in fields and "kind" not in fields:
        parts = [f"{kind}: {a['notation']}" if a["notation"] else kind]
    if "shape" in fields:
        parts.append(f"output {a['shape']} -> {b['shape']}")
    if "params" in fields:
        parts.append(f"params {a['params']:,} -> {b['params']:,}")
    return f"~ {name:<{width}}  {'; '.join(parts)}"
