"""Pydantic validation errors -> located, one-line :class:`Problem` s."""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Problem, did_you_mean
from .context import Context
from .items import REGISTRY, SRC, field_names
from .model import ModelSpec
from .types import FieldValueError


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


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class inside a field's annotation, and whether a list index or mapping key
    comes before it in a ``loc`` (``list[AugmentSpec]``, ``dict[str, ScaleSpec]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    container = typing.get_origin(annotation) in (list, dict, tuple)
    for arg in typing.get_args(annotation):
        cls, inner = _model_in(arg)
        if cls is not None:
            return cls, inner or container
    return None, False


def _model_at(loc: Sequence) -> type[BaseModel] | None:
    """The (non-layer) model at ``loc`` of a spec, or None."""
    cls: Any = ModelSpec
    skip = False  # the previous field was a list or a dict: this part is an index or a key
    for part in loc:
        if skip:
            skip = False
            continue
        field = next((f for n, f in cls.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        cls, skip = _model_in(field.annotation)
        if cls is None:
            return None
    return cls if not skip else None


def _keys(cls: type[BaseModel] | None) -> list[str]:
    return [f.alias or n for n, f in cls.model_fields.items()] if cls is not None else []


def _belongs_under(loc: Sequence, key: str) -> str | None:
    """The section at ``loc`` whose model takes ``key`` (``epochs`` dedented out of train:)."""
    cls = _model_at(loc)
    for name, field in cls.model_fields.items() if cls is not None else ():
        inner, skip = _model_in(field.annotation)
        if inner is not None and not skip and key in _keys(inner):
            return field.alias or name
    return None


def _unknown_key_hint(loc: Sequence, key: str, kind: str) -> str:
    """Did you mean a close key, or the section the key belongs under."""
    if kind in REGISTRY:
        allowed = field_names(REGISTRY[kind])
    else:
        allowed = _keys(_model_at(loc))
        section = _belongs_under(loc, key)
        if section is not None:
            where = ".".join(map(str, (*loc, section)))
            return f"'{key}' belongs under '{where}:'; indent it there"
    owner = kind or ".".join(str(p) for p in loc) or "a spec"
    return did_you_mean(key, allowed) or (f"{owner} takes {', '.join(allowed)}" if allowed else "")


def _without_src(value: Any) -> Any:
    """``value`` without the expander's bookkeeping (``__src__``): users never see it."""
    if isinstance(value, dict):
        return {k: _without_src(v) for k, v in value.items() if k != SRC}
    if isinstance(value, (list, tuple)):
        return type(value)(_without_src(v) for v in value)
    return value


def _shown(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (one line, even for a huge value)."""
    text = repr(_without_src(value))
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _branch(part: Any) -> bool:
    """Whether a loc element is Pydantic's tag of a union branch (``float``, ``list[float]``)."""
    return isinstance(part, str) and (part in ("float", "int", "str") or part.startswith("list["))


def _one_per_union(errors: list[dict]) -> list[dict]:
    """A value refused by every branch of a union (``float | list[float]``) is one problem:
    a list keeps its list branch's error, anything else the scalar branch's; the branch tag
    leaves the location."""
    tagged = []
    for err in errors:
        at = next((i for i, part in enumerate(err["loc"]) if _branch(part)), None)
        tagged.append((err, at))

    def listy(err: dict, at: int) -> bool:
        return str(err["loc"][at]).startswith("list[")

    kept = []
    for err, at in tagged:
        if at is not None:
            field = err["loc"][:at]
            others = [(o, j) for o, j in tagged if o is not err and j is not None]
            others = [(o, j) for o, j in others if o["loc"][:j] == field]
            is_list = any(listy(o, j) and o["type"] != "list_type" for o, j in others)
            if listy(err, at) and err["type"] == "list_type" and others:
                continue  # not a list: the scalar branch says what is wrong
            if not listy(err, at) and is_list:
                continue  # a list: its elements' errors say what is wrong
            err = {**err, "loc": err["loc"][:at] + err["loc"][at + 1 :]}
        kept.append(err)
    return kept


def problems_from(exc: ValidationError, data: dict, ctx: Context) -> list[Problem]:
    problems = []
    seen = set()
    for err in _one_per_union(exc.errors(include_url=False)):
        loc = err["loc"]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldValueError):
            loc = (*loc, cause.field)
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
            message = f"unknown key '{key}'"
            hint = _unknown_key_hint(loc[:-1], key, kind)
            path_txt = human or ".".join(str(p) for p in loc[:-1])
        elif loc and loc[-1] == "[key]":
            message = f"a name must be text, received {_shown(err.get('input'))}"
            hint = f"quote it: '{err.get('input')}':"
            path_txt = re.sub(r"\.?\[key\]$", "", path_txt)
        elif etype == "missing":
            message = f"missing required '{rest[-1] if rest else loc[-1]}'"
            path_txt = human or ".".join(str(p) for p in loc[:-1])
            if kind in REGISTRY and REGISTRY[kind].positional:
                hint = f"{kind} takes {', '.join(REGISTRY[kind].positional)} in order, e.g. '{kind}: ...'"
        elif "received" in msg:
            message = msg
        else:
            message = f"{msg[0].lower()}{msg[1:]}, received {_shown(err.get('input'))}"
        key = (str(where), path_txt, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(where, message, hint, path_txt))
    return problems
