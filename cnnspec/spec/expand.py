"""Step 2 of loading: layer items -> normalised mappings; ``define:`` uses and ``times:`` expanded.

Each item ``- conv: 3x3, 64, s=2`` (or its mapping form) becomes ``{kind: conv, K: 3x3, n_K: 64,
s: 2}``; uses of ``define:`` blocks are replaced by their layers with ``$n`` / ``${...}``
substituted (arithmetic only, never ``eval``); ``times:`` repeats an item. Every mapping keeps
``__src__``: where it came from, for error locations.
"""

from __future__ import annotations

import ast
import copy
import operator
import re
from collections.abc import Sequence
from typing import Any

from .. import notation, yamlio
from ..errors import Location, Problem, did_you_mean
from .blocks import BLOCKS
from .layers import PRIMITIVES, LayerSpec, kind_of
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
