"""From YAML to a validated :class:`ModelSpec`, with every problem located in the file.

Three steps, all pure Python:

1. ``yamlio`` parses the file, keeping the line/column of every node;
2. the expander turns each layer item (``- conv: 3x3, 64, s=2`` or its mapping form) into a
   normalised mapping ``{kind: conv, K: 3x3, n_K: 64, s: 2}``, replaces uses of ``define:``
   blocks by their layers and repeats ``times:`` items, remembering where each came from;
3. Pydantic validates the result (discriminated on ``kind``), then the graph compiler infers
   every shape. Errors of steps 2 and 3 are mapped back to the YAML positions.
"""

from __future__ import annotations

import ast
import copy
import operator
import re
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .. import notation, yamlio
from ..errors import Location, Problem, SpecError, did_you_mean
from .blocks import BLOCKS
from .layers import PRIMITIVES, LayerSpec, kind_of
from .model import ModelSpec
from .types import ACTIVATIONS

#: Every built-in kind, by tag.
REGISTRY: dict[str, type[LayerSpec]] = {kind_of(c): c for c in PRIMITIVES + BLOCKS}
#: Keys any layer item may carry besides its kind.
COMMON_KEYS = ("name", "from", "times")
SRC = "__src__"


class _Ctx:
    """Where we are while expanding: the document, problems found, the define stack."""

    def __init__(self, doc: yamlio.Document, defines: dict[str, Any], overrides: dict) -> None:
        self.doc = doc
        self.defines = defines if isinstance(defines, dict) else {}
        self.problems: list[Problem] = []
        self.overrides = overrides
        self.stack: list[str] = []

    def location(self, path: Sequence) -> Location:
        for opath, text in self.overrides.items():
            if tuple(path[: len(opath)]) == opath:
                return Location(f"--set {text}")
        return self.doc.location(tuple(path))

    def add(self, path: Sequence, human: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.location(path), message, hint, human))


# --- the expander ------------------------------------------------------------------------


def _fill_positional(cls: type[LayerSpec], values: list[Any], fields: dict[str, Any]) -> str | None:
    """Assign notation values to the kind's positional fields; return an error or None."""
    names = [n for n in cls.positional if n not in fields]
    takes_act = "act" in cls.model_fields
    for value in values:
        if takes_act and isinstance(value, str) and value in ACTIVATIONS and "act" not in fields:
            fields["act"] = value
            continue
        if not names:
            expected = ", ".join(cls.positional) or "no positional values"
            return f"too many values, received {value!r} (takes {expected}; write other fields as key=value)"
        fields[names.pop(0)] = value
    return None


class _ItemError(ValueError):
    """A layer item that is not of the form ``- kind: values``."""

    def __init__(self, message: str, hint: str = "write e.g. '- conv: 3x3, 64, s=1, p=1, relu'"):
        super().__init__(message)
        self.hint = hint


def _split_item(item: Any) -> tuple[str, Any, dict[str, Any]]:
    """``item`` -> (kind, kind value, common keys); raises :class:`_ItemError`."""
    if isinstance(item, str):
        word, colon, rest = item.strip().partition(":")
        word = word.strip()
        if not word or "," in word or " " in word:
            raise _ItemError(f"expected '- kind: values', received {item!r}")
        # 'conv: 3x3, 64' quoted in a flow list means {conv: '3x3, 64'}.
        return word, (rest.strip() or None) if colon else None, {}
    if not isinstance(item, dict):
        raise _ItemError(f"a layer must be a kind name or a mapping, received {item!r}")
    kinds = [k for k in item if k not in COMMON_KEYS]
    common = {k: item[k] for k in item if k in COMMON_KEYS}
    if not kinds:
        raise _ItemError("no layer kind in this item")
    if len(kinds) > 1:
        known = [k for k in kinds if k in REGISTRY]
        if len(known) == 1:
            extra = next(k for k in kinds if k != known[0])
            raise _ItemError(
                f"unknown key '{extra}' beside '{known[0]}'",
                did_you_mean(extra, COMMON_KEYS) or "one kind per item",
            )
        raise _ItemError(
            f"one layer per item, received the kinds {', '.join(map(str, kinds))}",
            did_you_mean(kinds[0], REGISTRY) or "one kind per item",
        )
    return kinds[0], item[kinds[0]], common


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _evaluate(expr: str, params: dict[str, Any]) -> Any:
    """Evaluate ``n*4`` style arithmetic on parameters; nothing else is allowed (no eval)."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in params:
                raise ValueError(f"unknown parameter '{node.id}'")
            return params[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            value = _BINOPS[type(node.op)](ev(node.left), ev(node.right))
            return int(value) if isinstance(value, float) and value.is_integer() else value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(f"only arithmetic on parameters is allowed, received '{expr}'")

    try:
        return ev(ast.parse(expr.strip(), mode="eval"))
    except SyntaxError:
        raise ValueError(f"cannot read the expression '{expr}'") from None


_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_]\w*)")


def _substitute(raw: Any, params: dict[str, Any]) -> Any:
    if isinstance(raw, str):
        whole = _PLACEHOLDER.fullmatch(raw.strip())
        if whole:
            return _evaluate(whole.group(1) or whole.group(2), params)
        return _PLACEHOLDER.sub(lambda m: str(_evaluate(m.group(1) or m.group(2), params)), raw)
    if isinstance(raw, list):
        return [_substitute(x, params) for x in raw]
    if isinstance(raw, dict):
        return {k: _substitute(v, params) for k, v in raw.items()}
    return raw


class _Expander:
    def __init__(self, ctx: _Ctx) -> None:
        self.ctx = ctx

    def items(self, items: Any, path: tuple, human: str) -> list[dict]:
        if not isinstance(items, list):
            self.ctx.add(path, human, f"expected a list of layers, received {items!r}")
            return []
        out: list[dict] = []
        for i, item in enumerate(items):
            out.extend(self.item(item, path + (i,), f"{human}[{i}]"))
        return out

    def item(self, item: Any, path: tuple, human: str) -> list[dict]:
        ctx = self.ctx
        try:
            kind, value, common = _split_item(item)
        except _ItemError as exc:
            ctx.add(path, human, str(exc), exc.hint)
            return []
        human = f"{human} {kind}"
        if kind in ctx.defines:
            node = self.use(kind, value, path, human)
        elif kind in REGISTRY:
            node = self.builtin(REGISTRY[kind], value, path, human)
        else:
            hint = did_you_mean(kind, list(REGISTRY) + list(ctx.defines))
            if kind in ACTIVATIONS:
                hint = f"write 'act: {kind}', or put {kind} in the previous layer (e.g. conv: 3x3, 64, {kind})"
            ctx.add(
                path + (kind,),
                human,
                f"unknown layer kind '{kind}'",
                hint or "see 'cnnspec schema'",
            )
            return []
        if node is None:
            return []
        for key in ("name", "from"):
            if key in common:
                node[key] = common[key]
        times = common.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            ctx.add(
                path + ("times",), human, f"times must be a positive integer, received {times!r}"
            )
            return []
        if times == 1:
            return [node]
        copies = []
        for k in range(times):
            c = copy.deepcopy(node)
            if "name" in c and isinstance(c["name"], str):
                c["name"] = f"{c['name']}_{k + 1}"
            copies.append(c)
        return copies

    def _fields(self, cls: type[LayerSpec], value: Any, path: tuple, human: str) -> dict | None:
        kind = kind_of(cls)
        if value is None:
            return {}
        if isinstance(value, dict):
            return dict(value)
        if isinstance(value, list) and "body" in cls.model_fields:
            return {"body": value}
        values: list[Any]
        keywords: dict[str, Any] = {}
        if isinstance(value, str):
            try:
                values, keywords = notation.parse(value)
            except ValueError as exc:
                self.ctx.add(
                    path + (kind,), human, str(exc), "write e.g. '3x3, 64, s=2, p=1, relu'"
                )
                return None
        else:
            values = [value]
        fields = dict(keywords)
        error = _fill_positional(cls, values, fields)
        if error:
            self.ctx.add(path + (kind,), human, error)
            return None
        return fields

    def builtin(self, cls: type[LayerSpec], value: Any, path: tuple, human: str) -> dict | None:
        kind = kind_of(cls)
        fields = self._fields(cls, value, path, human)
        if fields is None:
            return None
        kpath = path + (kind,)
        for key in ("body", "shortcut"):
            if isinstance(fields.get(key), list):
                fields[key] = self.items(fields[key], kpath + (key,), f"{human}.{key}")
        if isinstance(fields.get("branches"), list):
            fields["branches"] = [
                self.items(b, kpath + ("branches", j), f"{human}.branches[{j}]")
                for j, b in enumerate(fields["branches"])
            ]
        return {"kind": kind, **fields, SRC: (path, human)}

    def use(self, name: str, value: Any, path: tuple, human: str) -> dict | None:
        ctx = self.ctx
        define = ctx.defines[name]
        if name in ctx.stack:
            ctx.add(path, human, f"block '{name}' uses itself ({' > '.join(ctx.stack + [name])})")
            return None
        if not isinstance(define, dict) or not isinstance(define.get("layers"), list):
            return None  # reported by the model validation of define:
        declared = define.get("params") or {}
        if not isinstance(declared, dict):
            return None
        args: dict[str, Any] = {}
        if isinstance(value, dict):
            args = dict(value)
        elif value is not None:
            try:
                values, keywords = (
                    notation.parse(value) if isinstance(value, str) else ([value], {})
                )
            except ValueError as exc:
                ctx.add(path + (name,), human, str(exc))
                return None
            args = dict(keywords)
            free = [p for p in declared if p not in args]
            if len(values) > len(free):
                ctx.add(
                    path + (name,),
                    human,
                    f"too many values for block '{name}', received {value!r}",
                    f"it takes {', '.join(declared) or 'no parameters'}",
                )
                return None
            args.update(zip(free, values, strict=False))
        ok = True
        for key in args:
            if key not in declared:
                ctx.add(
                    path + (name, key),
                    human,
                    f"unknown parameter '{key}' of block '{name}'",
                    did_you_mean(key, declared)
                    or f"it takes {', '.join(declared) or 'no parameters'}",
                )
                ok = False
        params = {**declared, **args}
        missing = [k for k, v in params.items() if v is None]
        if missing:
            ctx.add(
                path + (name,),
                human,
                f"block '{name}' needs {', '.join(missing)}, received none",
                f"write e.g. '- {name}: {{{missing[0]}: 64}}'",
            )
            ok = False
        if not ok:
            return None
        try:
            layers = _substitute(copy.deepcopy(define["layers"]), params)
        except ValueError as exc:
            ctx.add(
                ("define", name, "layers"),
                f"define.{name}",
                str(exc),
                f"parameters: {', '.join(declared)}",
            )
            return None
        ctx.stack.append(name)
        try:
            body = self.items(layers, ("define", name, "layers"), f"{human} > define.{name}.layers")
        finally:
            ctx.stack.pop()
        return {"kind": "block", "block": name, "body": body, SRC: (path, human)}


# --- overrides ---------------------------------------------------------------------------


def _default_at(path: Sequence[Any]) -> Any:
    """The default value at ``path`` of a spec, as plain data (None when there is none)."""
    from pydantic import BaseModel

    value: Any = None
    cls: type[BaseModel] | None = ModelSpec
    for part in path:
        if cls is not None:
            field = next((f for n, f in cls.model_fields.items() if part in (n, f.alias)), None)
            if field is None or field.is_required():
                return None
            value = field.get_default(call_default_factory=True)
            cls = None
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_none=True, by_alias=True)
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None
    return value


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict[tuple, str]:
    """Apply ``a.b.c=value`` overrides in place; returns {path: text} for error locations.

    A segment that is missing under a single-key mapping descends into it, so
    ``train.optimizer.lr=0.1`` reaches ``train.optimizer.sgd.lr``.
    """
    applied: dict[tuple, str] = {}
    for text in overrides:
        key, eq, raw = text.partition("=")
        if not eq or not key.strip():
            raise SpecError.single(
                f"an override must look like key.path=value, received {text!r}",
                location=Location("--set"),
                hint="e.g. --set train.optimizer.lr=0.01",
            )
        parts: list[Any] = [
            int(p) if p.lstrip("-").isdigit() else p for p in key.strip().split(".")
        ]
        node: Any = data
        path: list[Any] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not isinstance(part, int) or not -len(node) <= part < len(node):
                    raise SpecError.single(
                        f"no item {part} in '{'.'.join(map(str, path))}', received {text!r}",
                        location=Location(f"--set {text}"),
                    )
            elif isinstance(node, dict):
                if (
                    part not in node
                    and len(node) == 1
                    and isinstance(next(iter(node.values())), dict)
                ):
                    inner = next(iter(node))
                    node, path = node[inner], path + [inner]
                if part not in node and not last:
                    # Start from the default (train.optimizer -> {adam: {...}}), so that
                    # train.optimizer.lr=0.1 works when the spec leaves the optimizer out.
                    default = _default_at(path + [part])
                    node[part] = copy.deepcopy(default) if isinstance(default, dict) else {}
            else:
                raise SpecError.single(
                    f"'{'.'.join(map(str, path))}' is not a mapping, received {text!r}",
                    location=Location(f"--set {text}"),
                )
            path.append(part)
            if last:
                node[part] = yamlio.parse_scalar(raw.strip())
            else:
                node = node[part]
        applied[tuple(path)] = text
    return applied


# --- Pydantic errors -> located problems -------------------------------------------------


def _walk(data: Any, loc: Sequence) -> tuple[tuple | None, str, str, list[str]]:
    """Follow a Pydantic ``loc`` through the normalised data.

    Returns (source path of the deepest layer item, its human path, its kind, the field path
    after the item).
    """
    node = data
    src: tuple | None = None
    human = ""
    kind = ""
    rest: list[str] = []
    tag_next = False
    for part in loc:
        if tag_next and isinstance(node, dict) and node.get("kind") == part:
            tag_next = False  # Pydantic puts the union tag after the list index
            continue
        tag_next = False
        rest.append(str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(node, dict) and SRC in node:
            src, human = node[SRC]
            kind = node.get("kind", "")
            rest = []
            tag_next = True
    return src, human, kind, rest


def _keys_at(loc: Sequence) -> list[str]:
    """The keys the (non-layer) model at ``loc`` accepts, for "did you mean" hints."""
    from pydantic import BaseModel

    cls: Any = ModelSpec
    mapping = False  # the previous field was a dict: this part is one of its keys
    for part in loc:
        if mapping:
            mapping = False
            continue
        field = next((f for n, f in cls.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return []
        mapping = typing.get_origin(field.annotation) is dict
        args = typing.get_args(field.annotation)
        cls = next(
            (
                c
                for c in (field.annotation, *args)
                if isinstance(c, type) and issubclass(c, BaseModel)
            ),
            None,
        )
        if cls is None:
            return []
    return [f.alias or n for n, f in cls.model_fields.items()]


def _problems_from(exc: ValidationError, data: dict, ctx: _Ctx) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        src, human, kind, rest = _walk(data, loc)
        field = ".".join(rest)
        if src is not None:
            where = ctx.location(src + ((kind,) + tuple(rest[:1]) if rest else (kind,)))
            path_txt = human + (f": {field}" if field else "")
        else:
            path_parts = [p for p in loc if not (isinstance(p, str) and p in REGISTRY)]
            where = ctx.location(tuple(path_parts))
            path_txt = ".".join(str(p) for p in path_parts)
            path_txt = re.sub(r"\.(\d+)", r"[\1]", path_txt)
        msg = err["msg"].removeprefix("Value error, ")
        hint = ""
        etype = err["type"]
        if etype == "extra_forbidden":
            key = rest[-1] if rest else str(loc[-1])
            if kind in REGISTRY:
                fields = REGISTRY[kind].model_fields.items()
                allowed = [f.alias or n for n, f in fields if n not in ("src", "kind")]
            else:
                allowed = _keys_at(loc[:-1])
            message = f"unknown key '{key}'"
            hint = did_you_mean(key, allowed) or (
                f"{kind} takes {', '.join(allowed)}" if allowed else ""
            )
            path_txt = human or ".".join(str(p) for p in loc[:-1])
        elif etype == "missing":
            message = f"missing required '{rest[-1] if rest else loc[-1]}'"
            path_txt = human or ".".join(str(p) for p in loc[:-1])
            if kind in REGISTRY and REGISTRY[kind].positional:
                hint = f"{kind} takes {', '.join(REGISTRY[kind].positional)} in order, e.g. '{kind}: ...'"
        elif "received" in msg:
            message = msg
        else:
            message = f"{msg[0].lower()}{msg[1:]}, received {err.get('input')!r}"
        key = (str(where), path_txt, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(where, message, hint, path_txt))
    return problems


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


def from_document(doc: yamlio.Document, overrides: Iterable[str] = ()) -> ModelSpec:
    """Validate a parsed document into a :class:`ModelSpec` and infer its shapes."""
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError.single(
            f"a spec must be a mapping with name, input and layers, received {type(data).__name__}",
            location=doc.location(()),
        )
    data = copy.deepcopy(data)
    applied = apply_overrides(data, overrides)
    _resolve_paths(data, doc.file)
    ctx = _Ctx(doc, data.get("define") or {}, applied)
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
    from .graph import compile_graph

    spec._graph = compile_graph(spec, ctx.location)
    return spec


def load_spec(path: str | Path, overrides: Iterable[str] = ()) -> ModelSpec:
    """Load, validate and shape-check a spec file. Raises :class:`SpecError` with every problem."""
    return from_document(yamlio.load(path), overrides)


def loads_spec(text: str, file: str = "<string>", overrides: Iterable[str] = ()) -> ModelSpec:
    """Like :func:`load_spec`, from YAML text."""
    return from_document(yamlio.loads(text, file), overrides)
