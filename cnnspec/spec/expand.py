"""Step 2 of loading: layer items -> normalised mappings; ``define:`` uses and ``times:`` expanded.

Each item ``- conv: 3x3, 64, s=2`` (or its mapping form) becomes ``{kind: conv, K: 3x3, n_K: 64,
s: 2}``; uses of ``define:`` blocks are replaced by their layers with ``$n`` / ``${...}``
substituted (bounded arithmetic, never ``eval``: see :mod:`.expressions`); ``times:`` repeats an
item, with ``$i`` its 0-based repeat index. Placeholders are filled item by item, so an error is
reported once, at the item that holds the expression. Every mapping keeps ``__src__``: where it
came from, for error locations. A scale (:mod:`.scales`) multiplies written channel counts and
``times:`` on the way.

Every amount a spec controls is bounded before the work is done: :data:`MAX_LAYERS` expanded
items, :data:`MAX_DEPTH` levels of nested blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from .. import yamlio
from ..errors import Location, Problem, closest, did_you_mean
from .blocks import BLOCKS
from .expressions import Computed, ExpressionError, parse_notation, plain, substitute
from .layers import PRIMITIVES, LayerSpec, kind_of
from .scales import CHANNEL_FIELDS, Scaling
from .types import ACTIVATIONS

#: Every built-in kind, by tag.
REGISTRY: dict[str, type[LayerSpec]] = {kind_of(c): c for c in PRIMITIVES + BLOCKS}
#: Keys any layer item may carry besides its kind.
COMMON_KEYS = ("name", "from", "times", "fixed", "if")
SRC = "__src__"
#: Most layer items a spec may expand to (``times:`` and define uses included), counted before
#: each repetition is expanded: a hostile ``times: 1000000000`` costs milliseconds.
MAX_LAYERS = 100_000
#: Deepest nesting of blocks (residual/parallel bodies, define uses inside define uses).
MAX_DEPTH = 32
#: The name ``$i`` takes inside an item with ``times:``: the 0-based repeat index.
REPEAT_INDEX = "i"
#: Keys of a block whose values are lists of layer items (expanded, not substituted).
NESTED_KEYS = ("body", "shortcut", "branches")


class _TooLarge(Exception):
    """The expansion passed :data:`MAX_LAYERS` (reported once; expansion stops)."""


class _Ctx:
    """Where we are while expanding: the document, problems found, the define stack."""

    def __init__(
        self,
        doc: yamlio.Document,
        defines: dict[str, Any],
        overrides: dict,
        scaling: Scaling | None = None,
        params: Any = None,
    ) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.overrides = overrides
        self.stack: list[str] = []
        self.scaling = scaling
        self.count = 0
        self._seen: set[str] = set()
        self.defines = self._check_defines(defines if isinstance(defines, dict) else {})
        #: Values of ``$name`` in every item: the spec's ``params:``, then the scale's.
        self.params = self._check_params(params, ("params",), "params")
        if scaling is not None:
            self.params.update(
                self._check_params(scaling.spec.params, ("scales", scaling.name, "params"), "scale")
            )

    def _check_params(self, params: Any, path: tuple, human: str) -> dict[str, Any]:
        if not isinstance(params, dict):
            return {}  # a wrong type is reported by the model validation
        out = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key.isidentifier() or key == REPEAT_INDEX:
                self.add(
                    path,
                    human,
                    f"a parameter name must be a name other than '{REPEAT_INDEX}', received {key!r}",
                    "write e.g. 'params: {dropout: 0.2}'",
                )
            else:
                out[key] = value
        return out

    def location(self, path: Sequence) -> Location:
        for opath, text in self.overrides.items():
            if tuple(path[: len(opath)]) == opath:
                return Location(f"--set {text}")
        return self.doc.location(tuple(path))

    def add(self, path: Sequence, human: str, message: str, hint: str = "") -> None:
        problem = Problem(self.location(path), message, hint, human)
        key = f"{problem.location}: {message}"
        if key not in self._seen:  # a define used ten times reports its error once
            self._seen.add(key)
            self.problems.append(problem)

    def _check_defines(self, defines: dict[str, Any]) -> dict[str, Any]:
        """Refuse defines that shadow a built-in kind, and parameters that are not names."""
        usable = {}
        for name, define in defines.items():
            if name in REGISTRY or name in COMMON_KEYS:
                what = "built-in kind" if name in REGISTRY else "key every item may carry"
                self.add(
                    ("define", name),
                    f"define.{name}",
                    f"'{name}' is a {what}; a define of that name would hide it",
                    f"rename the block, e.g. '{name}_block'",
                )
                continue
            params = define.get("params") if isinstance(define, dict) else None
            for key in params if isinstance(params, dict) else ():
                if not isinstance(key, str):
                    continue  # reported by the model validation (a name must be a string)
                if not key.isidentifier():
                    self.add(
                        ("define", name, "params"),
                        f"define.{name}.params",
                        f"a parameter name must be a name, received {key!r}",
                        "write e.g. 'params: {n: 64}'",
                    )
                elif key == REPEAT_INDEX:
                    self.add(
                        ("define", name, "params", key),
                        f"define.{name}.params",
                        f"'{key}' is the repeat index of times:, not a parameter name",
                        "choose another name",
                    )
            usable[name] = define
        return usable


# --- the expander ------------------------------------------------------------------------


def _fill_positional(cls: type[LayerSpec], values: list[Any], fields: dict[str, Any]) -> str | None:
    """Assign notation values to the kind's positional fields; return an error or None."""
    names = [n for n in cls.positional if n not in fields]
    takes_act = "act" in cls.model_fields
    for value in values:
        if takes_act and isinstance(value, str) and value in ACTIVATIONS and "act" not in fields:
            fields["act"] = value
            continue
        if takes_act and isinstance(value, str) and value.isidentifier() and "act" not in fields:
            guess = did_you_mean(value, ACTIVATIONS)  # 'rleu': a misspelt activation
            if guess:
                return f"unknown activation, received {value!r} ({guess})"
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
    if not isinstance(kinds[0], str):
        raise _ItemError(f"a layer kind must be a name, received {kinds[0]!r}")
    return kinds[0], item[kinds[0]], common


@dataclass(frozen=True)
class _Frame:
    """What an item sees: placeholder values, nesting depth, and whether scaling is off."""

    env: dict[str, Any]
    depth: int = 0
    fixed: bool = False


class _Expander:
    def __init__(self, ctx: _Ctx) -> None:
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
            kind, value, common = _split_item(item)
        except _ItemError as exc:
            ctx.add(path, human, str(exc), exc.hint)
            return []
        human = f"{human} {kind}"
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
            self._too_large(path, human, times if "times" in common else None, least)
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
                    self._too_large(path, human, times, size * times)
        return out

    def _too_large(self, path: tuple, human: str, times: int | None, size: int) -> None:
        what = f"times: {times} expands" if times is not None else "this item expands"
        self.ctx.add(
            path + ("times",) if times is not None else path,
            human,
            f"{what} to at least {size:,} layers, more than the limit of {MAX_LAYERS:,} layers "
            "per spec",
            "repeat fewer times" if times is not None else "use fewer layers",
        )
        raise _TooLarge

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
                kind, value, common = _split_item(item)
            except _ItemError:
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
        error = _fill_positional(cls, values, fields)
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
