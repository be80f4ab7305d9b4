"""``--set key.path=value`` overrides, applied to the plain data before validation."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from .. import yamlio
from ..errors import Location, SpecError
from .model import ModelSpec


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
        created: tuple | None = None  # the first key this override adds to the spec
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
                if part not in node and created is None:
                    created = (*path, part)
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
                try:
                    node[part] = yamlio.parse_scalar(raw.strip())
                except ValueError as exc:
                    raise SpecError.single(
                        f"{exc}, received {text[:80]!r}", location=Location(f"--set {text[:80]}")
                    ) from None
            else:
                node = node[part]
        shown = text if len(text) <= 80 else text[:75] + " ..."  # the location of its errors
        applied[tuple(path)] = shown
        if created is not None:
            # Errors about a key the override added (unknown key 'a' of --set a.b=1) are the
            # override's, not the spec line of the nearest existing ancestor.
            applied[created] = shown
    return applied
