"""The shape of one layer item: ``- kind: values`` plus the keys every item may carry.

``split_item`` separates an item into its kind, the kind's value and the common keys;
``fill_positional`` assigns compact-notation values to a kind's positional fields. Both are
pure and name what they received.
"""

from __future__ import annotations

from typing import Any

from ..errors import did_you_mean
from .blocks import BLOCKS
from .layers import PRIMITIVES, LayerSpec, kind_of
from .types import ACTIVATIONS, is_activation

#: Every built-in kind, by tag.
REGISTRY: dict[str, type[LayerSpec]] = {kind_of(c): c for c in PRIMITIVES + BLOCKS}
#: Keys any layer item may carry besides its kind.
COMMON_KEYS = ("name", "from", "times", "fixed", "if")
#: The key of an expanded item that says where it came from (never shown to users).
SRC = "__src__"
#: The name ``$i`` takes inside an item with ``times:``: the 0-based repeat index.
REPEAT_INDEX = "i"
#: Keys of a block whose values are lists of layer items (expanded, not substituted).
NESTED_KEYS = ("body", "shortcut", "branches")


def fill_positional(cls: type[LayerSpec], values: list[Any], fields: dict[str, Any]) -> str | None:
    """Assign notation values to the kind's positional fields; return an error or None."""
    names = [n for n in cls.positional if n not in fields]
    takes_act = "act" in cls.model_fields
    for value in values:
        if takes_act and is_activation(value) and "act" not in fields:
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


class ItemError(ValueError):
    """A layer item that is not of the form ``- kind: values``."""

    def __init__(self, message: str, hint: str = "write e.g. '- conv: 3x3, 64, s=1, p=1, relu'"):
        super().__init__(message)
        self.hint = hint


def split_item(item: Any) -> tuple[str, Any, dict[str, Any]]:
    """``item`` -> (kind, kind value, common keys); raises :class:`ItemError`."""
    if isinstance(item, str):
        word, colon, rest = item.strip().partition(":")
        word = word.strip()
        if not word or "," in word or " " in word:
            raise ItemError(f"expected '- kind: values', received {item!r}")
        # 'conv: 3x3, 64' quoted in a flow list means {conv: '3x3, 64'}.
        return word, (rest.strip() or None) if colon else None, {}
    if not isinstance(item, dict):
        raise ItemError(f"a layer must be a kind name or a mapping, received {item!r}")
    kinds = [k for k in item if k not in COMMON_KEYS]
    common = {k: item[k] for k in item if k in COMMON_KEYS}
    if not kinds:
        raise ItemError("no layer kind in this item")
    if len(kinds) > 1:
        _check_indentation(item, kinds)
        known = [k for k in kinds if k in REGISTRY]
        if len(known) == 1:
            extra = next(k for k in kinds if k != known[0])
            raise ItemError(
                f"unknown key '{extra}' beside '{known[0]}'",
                did_you_mean(extra, COMMON_KEYS) or "one kind per item",
            )
        raise ItemError(
            f"one layer per item, received the kinds {', '.join(map(str, kinds))}",
            did_you_mean(kinds[0], REGISTRY) or "one kind per item",
        )
    if not isinstance(kinds[0], str):
        raise ItemError(f"a layer kind must be a name, received {kinds[0]!r}")
    return kinds[0], item[kinds[0]], common


def field_names(cls: type[LayerSpec]) -> list[str]:
    """The keys a kind's mapping form takes (aliases: ``from``, not ``from_``)."""
    return [f.alias or n for n, f in cls.model_fields.items() if n not in ("src", "kind")]


def _check_indentation(item: dict, kinds: list) -> None:
    """``- conv:`` with its fields at its own level: they belong to it, one indent deeper.

    YAML reads ``K: 3`` written under ``- conv:`` at the same indentation as keys beside
    ``conv`` (whose value is then empty), not as its fields; ``act`` is a kind too, so the
    item looked like several layers.
    """
    for kind in kinds:
        if kind not in REGISTRY or item[kind] is not None:
            continue
        others = [k for k in kinds if k != kind]
        fields = field_names(REGISTRY[kind])
        if others and all(k in fields for k in others):
            keys = ", ".join(map(str, others))
            raise ItemError(
                f"{keys} are written beside '{kind}:', not under it ('{kind}' has no value)",
                f"indent {keys} two spaces more than '{kind}:' so they are its fields",
            )
