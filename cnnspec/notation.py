"""The compact notation: ``"3x3, 64, s=2, p=1, relu"`` -> positional values and keywords.

The string is split on commas outside brackets. ``key=value`` items are keywords; the others
are positional, filled in the order the layer kind declares (for conv: K, then n_K). A bare
activation name (``relu``) goes to ``act``. Values are read like YAML scalars, so ``6`` is an
int, ``1e-3`` a float, ``same`` and ``5x5`` stay strings for the field validators to parse.
"""

from __future__ import annotations

from typing import Any

from .yamlio import parse_scalar


def split(text: str) -> list[str]:
    """Split on top-level commas, keeping ``[1, 2]`` together."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    last = "".join(cur).strip()
    if last or parts:
        parts.append(last)
    return parts


def parse(text: str) -> tuple[list[Any], dict[str, Any]]:
    """Parse a compact notation string into (positional values, keyword values)."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for token in split(text):
        if not token:
            raise ValueError(f"empty item in '{text}'")
        key, eq, value = token.partition("=")
        if eq and key.strip().isidentifier():
            k = key.strip()
            if k in keywords:
                raise ValueError(f"'{k}' is given twice in '{text}'")
            keywords[k] = parse_scalar(value.strip())
        else:
            positional.append(parse_scalar(token))
    return positional, keywords
