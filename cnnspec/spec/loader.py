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
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from .. import yamlio
from ..errors import Location, SpecError
from .expand import COMMON_KEYS, REGISTRY, SRC, _Ctx, _Expander
from .model import ModelSpec
from .overrides import apply_overrides
from .problems import _problems_from
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
_PATH_KEYS = (("backbone", "model"), ("backbone", "weights"), ("train", "data"))


def _resolve_paths(data: dict, file: str) -> None:
    """Make relative file paths in the spec relative to the spec's own folder.

    A path that exists beside the spec wins; otherwise it stays as written (relative to the
    current directory), so both `cnnspec train specs/x.yaml` from the repository root and a spec
    kept next to its data work. Bare names (``digits``, ``MobileNetV2``) are never paths.
    """
    base = Path(file).parent
    if file.startswith("<") or not base.is_dir():
        return
    for section, key in _PATH_KEYS:
        node = data.get(section)
        value = node.get(key) if isinstance(node, dict) else None
        if not isinstance(value, str) or Path(value).is_absolute():
            continue
        if "/" not in value and "." not in value:
            continue
        beside = base / value
        if beside.exists() and not Path(value).exists():
            node[key] = str(beside)


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
    _resolve_paths(data, doc.file)
    scaling = apply_scale(data, scale, doc, Location(f"--scale {scale}"))
    ctx = _Ctx(doc, data.get("define") or {}, applied, scaling, data.get("params"))
    expander = _Expander(ctx)
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
    try:
        spec = ModelSpec.model_validate(normalised)
    except ValidationError as exc:
        found = _problems_from(exc, normalised, ctx)
        if problems:  # a list emptied by the expander's own errors is not a further problem
            found = [p for p in found if "at least 1 item" not in p.message]
        problems.extend(found)
    if problems:
        problems.sort(key=lambda p: (p.location.file, p.location.line or 0, p.location.col or 0))
        raise SpecError(problems)
    assert spec is not None
    spec._source = data
    spec._file = doc.file
    spec._scaling = scaling.report() if scaling else None
    from .graph import compile_graph

    spec._graph = compile_graph(spec, ctx.location)
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
