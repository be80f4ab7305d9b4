"""From YAML to a validated :class:`ModelSpec`, with every problem located in the file.

Three steps, all pure Python:

1. ``yamlio`` parses the file, keeping the line/column of every node;
2. ``expand`` turns each layer item into a normalised mapping, replaces uses of ``define:``
   blocks by their layers and repeats ``times:`` items, remembering where each came from
   (``overrides`` applies ``--set`` first);
3. Pydantic validates the result (discriminated on ``kind``), then the graph compiler infers
   every shape. ``problems`` maps errors of steps 2 and 3 back to the YAML positions.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from .. import yamlio
from ..errors import Location, SpecError
from ..tasks.checks import task_problems
from .expand import COMMON_KEYS, REGISTRY, SRC, Context, Expander
from .model import ModelSpec
from .monitors import monitor_problems, resolve_modes
from .overrides import apply_overrides
from .problems import problems_from
from .scales import apply_scale

__all__ = [
    "COMMON_KEYS",
    "REGISTRY",
    "SRC",
    "apply_overrides",
    "from_document",
    "load_spec",
    "loads_spec",
]


# --- file paths in a spec ----------------------------------------------------------------------

#: Values that name files: (section, key). Relative ones are read from the spec's folder first.
_PATH_KEYS = (
    ("backbone", "model"),
    ("backbone", "weights"),
    ("train", "data"),
    ("init", "from"),
)


def _resolve_paths(data: dict, file: str, given: Iterable[tuple] = ()) -> None:
    """Make relative file paths in the spec absolute: a spec's own beside the spec, one given
    on the command line (``given``: --data, --set) from the current directory.

    A spec's path that is not beside it but is in the current directory is taken from there
    (specs written for the repository root: ``data: data/images`` in ``specs/``). Absolute
    paths make the run's spec.yaml and a search's best.yaml work from any folder, and a
    "not found" name the file it looked for. Bare names (``digits``, ``MobileNetV2``) are
    paths only where such a file or folder exists.
    """
    base = Path(file).parent
    spec_file = not file.startswith("<") and base.is_dir()
    for section, key in _PATH_KEYS:
        node = data.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            continue
        if (section, key) in set(given) or not spec_file:
            candidates = [Path.cwd() / value]
        else:
            candidates = [base / value, Path.cwd() / value]
        found = next((c for c in candidates if c.exists()), None)
        if found is None and "/" not in value and "." not in value:
            continue  # a name (a built-in data set, a keras.applications model)
        node[key] = os.path.abspath(found or candidates[0])


# --- entry points --------------------------------------------------------------------------


def from_document(
    doc: yamlio.Document, overrides: Iterable[str] = (), scale: str | None = None
) -> ModelSpec:
    """Validate a parsed document into a :class:`ModelSpec` and infer its shapes.

    ``scale`` names an entry of the spec's ``scales:`` (``--scale``); by default the spec's own
    ``scale:`` applies, if any.
    """
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError.single(
            f"a spec must be a mapping with name, input and layers, received {type(data).__name__}",
            location=doc.location(()),
        )
    data = copy.deepcopy(data)
    applied = apply_overrides(data, overrides)
    _resolve_paths(data, doc.file, applied)
    scaling = apply_scale(data, scale, doc, Location(f"--scale {scale}"), applied)
    ctx = Context(doc, data.get("define") or {}, applied, scaling, data.get("params"))
    ctx.check_scale_params(data.get("scales"))
    expander = Expander(ctx)
    normalised = dict(data)
    if "layers" in data:
        normalised["layers"] = expander.items(data["layers"], ("layers",), "layers")
    if isinstance(data.get("heads"), dict):
        normalised["heads"] = {}
        for hname, head in data["heads"].items():
            if isinstance(head, dict) and "layers" in head:
                head = dict(head)
                head["layers"] = expander.items(
                    head["layers"], ("heads", hname, "layers"), f"heads.{hname}.layers"
                )
            normalised["heads"][hname] = head
    problems = list(ctx.problems)
    spec = None
    errors: list[dict] = []
    try:
        spec = ModelSpec.model_validate(normalised)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        found = problems_from(exc, normalised, ctx)
        if problems:  # a list emptied by the expander's own errors is not a further problem
            found = [p for p in found if "at least 1 item" not in p.message]
        problems.extend(found)
    from .graph import compile_graph

    # Every independent problem in one run: with schema errors, the shapes of the layers that
    # validated are still inferred (a layer that failed is skipped with what reads it).
    checked = spec if not problems else _partial(normalised, data, errors)
    graph = None
    if checked is not None:
        try:
            graph = compile_graph(checked, ctx.location)
        except SpecError as exc:
            from .input_sizes import with_hint  # merges of mismatched sizes: inputs that fit

            problems.extend(with_hint(checked, exc.problems) if checked is spec else exc.problems)
    if graph is not None and not any(e["loc"][:1] == ("train",) for e in errors):
        problems.extend(monitor_problems(checked, graph, ctx.location))
        problems.extend(task_problems(checked, graph, ctx))
    if problems:
        # Copies made by times: fail alike: one line each.
        problems = list({str(p): p for p in problems}.values())
        problems.sort(key=lambda p: (p.location.file, p.location.line or 0, p.location.col or 0))
        raise SpecError(problems)
    assert spec is not None
    spec._source = data
    spec._file = doc.file
    spec._scaling = scaling.report() if scaling else None
    spec._graph = graph
    resolve_modes(spec, graph)
    return spec


#: A layer item that always validates, standing in for one that did not (see ``_partial``).
_STAND_IN = {"kind": "act", "fn": "linear"}
#: Without a valid value of these there is nothing to infer shapes from.
_SHAPE_KEYS = ("input", "backbone", "preprocess", "layers")


def _partial(normalised: dict, data: dict, errors: list[dict]) -> ModelSpec | None:
    """The spec with every layer item that failed (expansion or schema) marked unchecked.

    None when the shapes cannot be inferred at all (the input or the layer list is invalid).
    """
    from .graph import Unchecked

    layers, original = normalised.get("layers"), data.get("layers")
    if not isinstance(layers, list) or not isinstance(original, list):
        return None
    bad: set[int] = set()
    drop: set[str] = set()
    for err in errors:
        loc = err["loc"]
        if loc[:1] == ("layers",) and len(loc) > 1 and isinstance(loc[1], int):
            bad.add(loc[1])
        elif not loc or loc[0] in _SHAPE_KEYS:
            return None
        elif loc[0] == "heads" and len(loc) > 1:
            drop.add(str(loc[1]))
        else:
            drop.add(str(loc[0]))
    # The expanded items of each top-level item (times: and define uses give several or one).
    groups: dict[int, list[int]] = {}
    for j, item in enumerate(layers):
        path = item.get(SRC, ((), ""))[0] if isinstance(item, dict) else ()
        if len(path) > 1 and path[0] == "layers" and isinstance(path[1], int):
            groups.setdefault(path[1], []).append(j)
    items: list = []
    unchecked: dict[int, Unchecked] = {}
    for i, raw in enumerate(original):
        js = groups.get(i, [])
        if js and not bad.intersection(js):
            items.extend(layers[j] for j in js)
            continue
        name = raw.get("name") if isinstance(raw, dict) else None
        unchecked[len(items)] = Unchecked(name if isinstance(name, str) else None)
        items.append(_STAND_IN)
    heads = data.get("heads")
    for hname, head in (heads if isinstance(heads, dict) else {}).items():
        # A head with an item that failed expansion would be checked without it: skip it.
        raw = head.get("layers") if isinstance(head, dict) else None
        done_head = (normalised.get("heads") or {}).get(hname)
        done = done_head.get("layers") if isinstance(done_head, dict) else None
        if isinstance(raw, list) and isinstance(done, list):
            found = {item.get(SRC, ((),))[0][3:4] for item in done if isinstance(item, dict)}
            if any((i,) not in found for i in range(len(raw))):
                drop.add(str(hname))
    rest = {k: v for k, v in normalised.items() if k not in drop and k != "layers"}
    if isinstance(rest.get("heads"), dict):
        rest["heads"] = {h: v for h, v in rest["heads"].items() if str(h) not in drop}
    if "name" in drop:
        rest["name"] = "spec"
    try:
        spec = ModelSpec.model_validate({**rest, "layers": items})
    except ValidationError:
        return None
    for j, stand_in in unchecked.items():
        spec.layers[j] = stand_in
    return spec


def load_spec(
    path: str | Path, overrides: Iterable[str] = (), scale: str | None = None
) -> ModelSpec:
    """Load, validate and shape-check a spec file. Raises :class:`SpecError` with every problem."""
    return from_document(yamlio.load(path), overrides, scale)


def loads_spec(
    text: str, file: str = "<string>", overrides: Iterable[str] = (), scale: str | None = None
) -> ModelSpec:
    """Like :func:`load_spec`, from YAML text."""
    return from_document(yamlio.loads(text, file), overrides, scale)
