"""Pydantic validation errors -> located, one-line :class:`Problem` s."""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..errors import Problem, did_you_mean
from .context import Context
from .items import REGISTRY, SRC
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


def _shown(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (one line, even for a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def problems_from(exc: ValidationError, data: dict, ctx: Context) -> list[Problem]:
    problems = []
    seen = set()
    for err in exc.errors(include_url=False):
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
            if kind in REGISTRY:
                fields = REGISTRY[kind].model_fields.items()
                allowed = [f.alias or n for n, f in fields if n not in ("src", "kind")]
            else:
                allowed = _keys_at(loc[:-1])
            message = f"unknown key '{key}'"
            owner = kind or ".".join(str(p) for p in loc[:-1]) or "a spec"
            hint = did_you_mean(key, allowed) or (
                f"{owner} takes {', '.join(allowed)}" if allowed else ""
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
            message = f"{msg[0].lower()}{msg[1:]}, received {_shown(err.get('input'))}"
        key = (str(where), path_txt, message)
        if key in seen:
            continue
        seen.add(key)
        problems.append(Problem(where, message, hint, path_txt))
    return problems
