"""Step 2 of loading: layer items -> normalised mappings; ``define:`` uses and ``times:`` expanded.

Each item ``- conv: 3x3, 64, s=2`` (or its mapping form) becomes ``{kind: conv, K: 3x3, n_K: 64,
s: 2}``; uses of ``define:`` blocks are replaced by their layers with ``$n`` / ``${...}``
substituted (bounded arithmetic, never ``eval``: see :mod:`.expressions`); ``times:`` repeats an
item, with ``$i`` its 0-based repeat index. Placeholders are filled item by item, so an error is
reported once, at the item that holds the expression. Every mapping keeps ``__src__``: where it
came from, for error locations. A scale (:mod:`.scales`) multiplies written channel counts and
``times:`` on the way.

Every amount a spec controls is bounded before the work is done: :data:`MAX_LAYERS` expanded
items, :data:`MAX_DEPTH` levels of nested blocks. The shape of one item lives in :mod:`.items`,
what the expansion carries (problems, defines, params) in :mod:`.context`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import closest, did_you_mean
from .context import Context
from .expressions import Computed, ExpressionError, parse_notation, plain, substitute
from .items import (
    COMMON_KEYS,
    NESTED_KEYS,
    REGISTRY,
    REPEAT_INDEX,
    SRC,
    ItemError,
    fill_positional,
    split_item,
)
from .layers import LayerSpec, kind_of
from .scales import CHANNEL_FIELDS
from .types import ACTIVATIONS

__all__ = [
    "COMMON_KEYS",
    "MAX_DEPTH",
    "MAX_LAYERS",
    "NESTED_KEYS",
    "REGISTRY",
    "REPEAT_INDEX",
    "SRC",
    "Context",
    "Expander",
]
#: Most layer items a spec may expand to (``times:`` and define uses included), counted before
#: each repetition is expanded: a hostile ``times: 1000000000`` costs milliseconds.
MAX_LAYERS = 100_000
#: Deepest nesting of blocks (residual/parallel bodies, define uses inside define uses).
MAX_DEPTH = 32


class _TooLarge(Exception):
    """The expansion passed :data:`MAX_LAYERS` (reported once; expansion stops)."""


def _written_for_define(kind: str, value: Any, params: list) -> bool:
    """Whether a use of ``kind`` reads as a use of the (refused) define of that name.

    ``- block: {n: 4}`` or a bare ``- block`` would fail as the built-in kind; ``- conv: 3x3,
    4`` is the built-in conv and still counts (dropping it would shift every later shape).
    """
    if value is None:
        return kind not in REGISTRY or any(
            f.is_required() for n, f in REGISTRY[kind].model_fields.items() if n != "kind"
        )
    return isinstance(value, dict) and all(k in params for k in value)


@dataclass(frozen=True)
class _Frame:
    """What an item sees: placeholder values, nesting depth, and whether scaling is off."""

    env: dict[str, Any]
    depth: int = 0
    fixed: bool = False


class Expander:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._memo: dict[str, int] = {}

    def items(self, items: Any, path: tuple, human: str, frame: _Frame | None = None) -> list[dict]:
        """Expand a list of layer items (the entry point: ``layers:`` and heads)."""
        frame = frame or _Frame(dict(self.ctx.params))
        top = frame.depth == 0
        try:
            return self._items(items, path, human, frame)
        except _TooLarge:
            if top:
                return []
            raise

    def _items(self, items: Any, path: tuple, human: str, frame: _Frame) -> list[dict]:
        if not isinstance(items, list):
            self.ctx.add(path, human, f"expected a list of layers, received {items!r}")
            return []
        if frame.depth > MAX_DEPTH:
            self.ctx.add(
                path,
                human,
                f"blocks are nested more than {MAX_DEPTH} deep",
                "flatten the nesting (a define can list its layers one after another)",
            )
            return []
        out: list[dict] = []
        for i, item in enumerate(items):
            out.extend(self.item(item, path + (i,), f"{human}[{i}]", frame))
        return out

    def _resolve(self, raw: Any, env: dict, path: tuple, human: str) -> tuple[bool, Any]:
        """Substitute placeholders in ``raw``; (False, None) after reporting an error."""
        try:
            return True, substitute(raw, env)
        except ExpressionError as exc:
            self.ctx.add(path, human, str(exc), exc.hint)
            return False, None

    def _times(self, common: dict, frame: _Frame, path: tuple, human: str) -> int | None:
        raw = common.get("times", 1)
        ok, times = self._resolve(raw, frame.env, path + ("times",), human)
        if not ok:
            return None
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            self.ctx.add(
                path + ("times",), human, f"times must be a positive integer, received {times!r}"
            )
            return None
        written = "times" in common and not isinstance(times, Computed)
        if self.ctx.scaling and written and not frame.fixed:
            times = self.ctx.scaling.times(times)
        return int(times)

    def item(self, item: Any, path: tuple, human: str, frame: _Frame) -> list[dict]:
        ctx = self.ctx
        try:
            kind, value, common = split_item(item)
        except ItemError as exc:
            ctx.add(path, human, str(exc), exc.hint)
            return []
        human = f"{human} {kind}"
        if kind in ctx.refused and _written_for_define(kind, value, ctx.refused[kind]):
            # A use of a define refused for its name ('block'): its one error is reported at
            # the define, not again (as a built-in kind with the wrong fields) at every use.
            return []
        if kind not in ctx.defines and kind not in REGISTRY:
            hint = did_you_mean(kind, list(REGISTRY) + list(ctx.defines))
            act = kind if kind in ACTIVATIONS else None
            if act is None and not hint:  # '- rleu': a misspelt activation
                act = closest(kind, list(ACTIVATIONS))
            if act is not None:
                hint = f"write 'act: {act}', or put {act} in the previous layer (e.g. conv: 3x3, 64, {act})"
                if act != kind:
                    hint = f"did you mean the activation '{act}'? {hint}"
            ctx.add(
                path + (kind,),
                human,
                f"unknown layer kind '{kind}'",
                hint or "see 'cnnspec schema'",
            )
            return []
        fixed = common.get("fixed", False)
        if not isinstance(fixed, bool):
            ctx.add(path + ("fixed",), human, f"fixed must be true or false, received {fixed!r}")
            return []
        frame = replace(frame, fixed=frame.fixed or fixed)
        if "if" in common:
            ok, cond = self._resolve(common["if"], frame.env, path + ("if",), human)
            if ok and not isinstance(cond, bool):
                ctx.add(
                    path + ("if",),
                    human,
                    f"if: needs true or false, received {cond!r}",
                    "write a comparison, e.g. 'if: ${i > 0}'",
                )
            if not ok or cond is not True:
                return []
        times = self._times(common, frame, path, human)
        if times is None:
            return []
        least = times * self._least(kind, value, ())
        if ctx.count + least > MAX_LAYERS:
            shown = times if "times" in common else None
            self._too_large(path, human, shown, least, ctx.count + least)
        out: list[dict] = []
        for k in range(times):
            before = ctx.count
            env = {**frame.env, REPEAT_INDEX: k} if "times" in common else frame.env
            node = self.one(kind, value, path, human, replace(frame, env=env))
            if node is None:
                return out
            for key in ("name", "from"):
                if key in common:
                    ok, resolved = self._resolve(common[key], env, path + (key,), human)
                    if not ok:
                        return out
                    node[key] = plain(resolved)
            if times > 1 and isinstance(node.get("name"), str):
                node["name"] = f"{node['name']}_{k + 1}"
            out.append(node)
            if k == 0 and times > 1:
                size = max(ctx.count - before, 1)
                if ctx.count + size * (times - 1) > MAX_LAYERS:
                    total = ctx.count + size * (times - 1)
                    self._too_large(path, human, times, size * times, total)
        return out

    def _too_large(self, path: tuple, human: str, times: int | None, size: int, total: int) -> None:
        """Refuse an item that takes the spec past :data:`MAX_LAYERS` (``total`` layers)."""
        what = f"times: {times} expands" if times is not None else "this item expands"
        if times is not None and self.ctx.scaling:
            written = self._written_times(path)
            if written is not None and written != times:
                what = f"times: {written} (x{self.ctx.scaling.spec.depth:g} depth: {times}) expands"
        spec = f", which brings the spec to at least {total:,}" if total > size else ""
        self.ctx.add(
            path + ("times",) if times is not None else path,
            human,
            f"{what} to at least {size:,} layers{spec}, more than the limit of {MAX_LAYERS:,} "
            "layers per spec",
            "repeat fewer times" if times is not None else "use fewer layers",
        )
        raise _TooLarge

    def _written_times(self, path: tuple) -> int | None:
        """The ``times:`` as the spec writes it at ``path`` (before a scale's depth)."""
        key = (*path, "times")
        if any(key[: len(o)] == o for o in self.ctx.overrides):
            return None  # set by --set: the file's value is not the one used
        node: Any = self.ctx.doc.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        times = node.get("times") if isinstance(node, dict) else None
        return times if isinstance(times, int) and not isinstance(times, bool) else None

    def _least(self, kind: Any, value: Any, stack: tuple) -> int:
        """A lower bound of the layers one copy of an item expands to, without expanding it.

        Computed ``times:`` count as 1 and items with ``if:`` as 0, so the bound never refuses
        a spec that fits; define bodies are counted once (memoised), so nested repeats that
        multiply to 10**8 layers are refused in microseconds.
        """
        if kind in self.ctx.defines:
            if kind in stack:
                return 1
            if kind not in self._memo:
                body = (
                    self.ctx.defines[kind].get("layers")
                    if isinstance(self.ctx.defines[kind], dict)
                    else None
                )
                self._memo[kind] = 1 + self._least_items(body, stack + (kind,))
            return self._memo[kind]
        nested = 0
        if isinstance(value, dict):
            for key in ("body", "shortcut"):
                nested += self._least_items(value.get(key), stack)
            branches = value.get("branches")
            for branch in branches if isinstance(branches, list) else ():
                nested += self._least_items(branch, stack)
        elif isinstance(value, list):
            nested = self._least_items(value, stack)
        return 1 + nested

    def _least_items(self, items: Any, stack: tuple) -> int:
        if not isinstance(items, list) or len(stack) > MAX_DEPTH:
            return 0
        total = 0
        for item in items:
            try:
                kind, value, common = split_item(item)
            except ItemError:
                continue
            if "if" in common:
                continue
            times = common.get("times", 1)
            times = times if isinstance(times, int) and not isinstance(times, bool) else 1
            if self.ctx.scaling and "times" in common:
                times = min(times, self.ctx.scaling.times(times))
            total += max(times, 0) * self._least(kind, value, stack)
            if total > MAX_LAYERS:
                break  # enough to refuse; never count on through a bomb
        return total

    def one(self, kind: str, value: Any, path: tuple, human: str, frame: _Frame) -> dict | None:
        """One copy of an item (a define use or a built-in kind)."""
        self.ctx.count += 1
        if self.ctx.count > MAX_LAYERS:
            self.ctx.add(
                path,
                human,
                f"the spec expands to more than {MAX_LAYERS:,} layers",
                "use fewer layers",
            )
            raise _TooLarge
        if kind in self.ctx.defines:
            return self.use(kind, value, path, human, frame)
        return self.builtin(REGISTRY[kind], value, path, human, frame)

    def _fields(
        self, cls: type[LayerSpec], value: Any, path: tuple, human: str, frame: _Frame
    ) -> dict | None:
        kind = kind_of(cls)
        kpath = path + (kind,)
        if value is None:
            return {}
        if isinstance(value, dict):
            fields = {}
            for key, raw in value.items():
                if key in NESTED_KEYS:
                    fields[key] = raw
                    continue
                ok, fields[key] = self._resolve(raw, frame.env, kpath + (key,), human)
                if not ok:
                    return None
            return fields
        if isinstance(value, list) and "body" in cls.model_fields:
            return {"body": value}
        values: list[Any]
        keywords: dict[str, Any] = {}
        if isinstance(value, str):
            try:
                values, keywords = parse_notation(value, frame.env)
            except ExpressionError as exc:
                self.ctx.add(kpath, human, str(exc), exc.hint)
                return None
            except ValueError as exc:
                self.ctx.add(kpath, human, str(exc), "write e.g. '3x3, 64, s=2, p=1, relu'")
                return None
        else:  # a compact list or number: 'reshape: [1, 1, $c]' fills the first field
            ok, resolved = self._resolve(value, frame.env, kpath, human)
            if not ok:
                return None
            values = [resolved]
        fields = dict(keywords)
        error = fill_positional(cls, values, fields)
        if error:
            self.ctx.add(kpath, human, error)
            return None
        return fields

    def builtin(
        self, cls: type[LayerSpec], value: Any, path: tuple, human: str, frame: _Frame
    ) -> dict | None:
        kind = kind_of(cls)
        fields = self._fields(cls, value, path, human, frame)
        if fields is None:
            return None
        kpath = path + (kind,)
        scaling = self.ctx.scaling
        for key in CHANNEL_FIELDS if scaling and not frame.fixed else ():
            value = fields.get(key)
            written = isinstance(value, int) and not isinstance(value, (bool, Computed))
            if written and value > 0 and key in cls.model_fields:
                fields[key] = scaling.channels(value, self.ctx.location(kpath), f"{human} {key}")
        fields = {k: v if k in NESTED_KEYS else plain(v) for k, v in fields.items()}
        inner = replace(frame, depth=frame.depth + 1)
        for key in ("body", "shortcut"):
            if isinstance(fields.get(key), list):
                fields[key] = self._items(fields[key], kpath + (key,), f"{human}.{key}", inner)
        if isinstance(fields.get("branches"), list):
            fields["branches"] = [
                self._items(b, kpath + ("branches", j), f"{human}.branches[{j}]", inner)
                for j, b in enumerate(fields["branches"])
            ]
        return {"kind": kind, **fields, SRC: (path, human)}

    def _arguments(
        self, name: str, value: Any, declared: dict, path: tuple, human: str, frame: _Frame
    ) -> dict | None:
        """The values given at a use of ``name``, placeholders filled from the caller."""
        ctx = self.ctx
        upath = path + (name,)
        if isinstance(value, dict):
            args = {}
            for key, raw in value.items():
                ok, args[key] = self._resolve(raw, frame.env, upath + (key,), human)
                if not ok:
                    return None
            return args
        if value is None:
            return {}
        try:
            values, keywords = (
                parse_notation(value, frame.env)
                if isinstance(value, str)
                else ([substitute(value, frame.env)], {})
            )
        except ExpressionError as exc:
            ctx.add(upath, human, str(exc), exc.hint)
            return None
        except ValueError as exc:
            ctx.add(upath, human, str(exc))
            return None
        args = dict(keywords)
        free = [p for p in declared if p not in args]
        if len(values) > len(free):
            ctx.add(
                upath,
                human,
                f"too many values for block '{name}', received {value!r}",
                f"it takes {', '.join(map(str, declared)) or 'no parameters'}",
            )
            return None
        args.update(zip(free, values, strict=False))
        return args

    def use(self, name: str, value: Any, path: tuple, human: str, frame: _Frame) -> dict | None:
        ctx = self.ctx
        define = ctx.defines[name]
        if name in ctx.stack:
            ctx.add(path, human, f"block '{name}' uses itself ({' > '.join(ctx.stack + [name])})")
            return None
        if not isinstance(define, dict) or not isinstance(define.get("layers"), list):
            return None  # reported by the model validation of define:
        declared = define.get("params") or {}
        if not isinstance(declared, dict) or not all(isinstance(k, str) for k in declared):
            return None  # reported by the model validation / _check_defines
        args = self._arguments(name, value, declared, path, human, frame)
        if args is None:
            return None
        ok = True
        for key in args:
            if key not in declared:
                ctx.add(
                    path + (name, key),
                    human,
                    f"unknown parameter '{key}' of block '{name}'",
                    did_you_mean(str(key), declared)
                    or f"it takes {', '.join(declared) or 'no parameters'}",
                )
                ok = False
        params = {**declared, **args}
        missing = [k for k in declared if params[k] is None]
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
        channels = define.get("channels") or []
        if ctx.scaling and not frame.fixed and isinstance(channels, list):
            for key in channels:
                if not isinstance(key, str):
                    continue  # reported by the model validation of channels:
                v = params.get(key)
                if isinstance(v, int) and not isinstance(v, (bool, Computed)) and v > 0:
                    where = path + (name, key) if key in args else ("define", name, "params", key)
                    params[key] = ctx.scaling.channels(v, ctx.location(where), f"{human} {key}")
        if REPEAT_INDEX in frame.env:
            params[REPEAT_INDEX] = frame.env[REPEAT_INDEX]
        # The body reads the spec's (and the scale's) params:, shadowed by the define's own.
        env = {**ctx.params, **params}
        ctx.stack.append(name)
        try:
            body = self._items(
                define["layers"],
                ("define", name, "layers"),
                f"{human} > define.{name}.layers",
                _Frame(env, frame.depth + 1, frame.fixed),
            )
        finally:
            ctx.stack.pop()
        return {"kind": "block", "block": name, "body": body, SRC: (path, human)}
