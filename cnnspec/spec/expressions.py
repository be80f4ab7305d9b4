"""``$n`` / ``${...}`` placeholders: bounded arithmetic on parameters, read with ``ast`` (no eval).

An expression may use numbers, parameter names, ``+ - * / // % **``, comparisons,
``a if cond else b`` and the functions of :data:`FUNCTIONS` (``min``, ``max``, ``round``,
``floor``, ``ceil``, ``int``, ``abs``). Every amount is bounded *before* the work is done: the
text is at most :data:`MAX_EXPRESSION` characters, every value at most :data:`MAX_VALUE` in
magnitude, and a power is refused before it is computed when its result would exceed that.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import did_you_mean
from ..yamlio import parse_scalar

#: Longest ``${...}`` expression, in characters.
MAX_EXPRESSION = 200
#: Largest magnitude of any value inside an expression (and of its result).
MAX_VALUE = 10**15

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z_]\w*)")
_TOKEN = re.compile(r"__cnnspec_(\d+)__")


class ExpressionError(ValueError):
    """An expression that cannot be evaluated; carries a hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class Computed(int):
    """An int that came out of a placeholder (width scaling leaves it alone: its inputs scaled)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _round(x: float, ndigits: int | None = None) -> float:
    return round(x) if ndigits is None else round(x, int(ndigits))


#: The functions an expression may call: name -> (function, min args, max args).
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {
    "min": (min, 2, 64),
    "max": (max, 2, 64),
    "round": (_round, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "int": (int, 1, 1),
    "abs": (abs, 1, 1),
}

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def evaluate(expr: str, params: dict[str, Any]) -> Any:
    """Evaluate ``n*4``-style arithmetic on ``params``; raises :class:`ExpressionError`."""
    text = expr.strip()
    shown = text if len(text) <= 40 else text[:37] + "..."
    if len(text) > MAX_EXPRESSION:
        raise ExpressionError(
            f"the expression '{shown}' is {len(text)} characters long, more than {MAX_EXPRESSION}",
            "split it over define: parameters",
        )
    if not text:
        raise ExpressionError("empty expression '${}'", "write e.g. ${n*4}")

    def bounded(value: Any) -> Any:
        if _is_number(value):
            if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_VALUE:
                raise ExpressionError(
                    f"'{shown}' goes out of range (beyond {MAX_VALUE:.0e})",
                    "expressions compute layer sizes; keep them small",
                )
            if isinstance(value, float) and value.is_integer():
                return int(value)
        return value

    def number(node: ast.AST) -> int | float:
        value = ev(node)
        if not _is_number(value):
            raise ExpressionError(
                f"'{shown}' computes with {value!r}, which is not a number",
                "pass a number for the parameter",
            )
        return value

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and _is_number(node.value):
            return bounded(node.value)
        if isinstance(node, ast.Name):
            if node.id not in params:
                hint = did_you_mean(node.id, list(params))
                if node.id == "i":
                    hint = "$i is the repeat index (0, 1, ...) inside an item with times:"
                raise ExpressionError(
                    f"unknown parameter '{node.id}' in '{shown}'",
                    hint or f"parameters here: {', '.join(params) or 'none'}",
                )
            return params[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = number(node.left), number(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
                raise ExpressionError(f"division by zero in '{shown}'")
            if isinstance(node.op, ast.Pow):
                if left < 0 and not float(right).is_integer():
                    raise ExpressionError(
                        f"'{shown}' takes a fractional power of a negative number"
                    )
                if left == 0 and right < 0:
                    raise ExpressionError(f"division by zero in '{shown}'")
                # log2 of the result, before computing it: 10**5000 never gets built.
                if left != 0 and right * math.log2(abs(left)) > math.log2(MAX_VALUE):
                    raise ExpressionError(
                        f"'{shown}' goes out of range (beyond {MAX_VALUE:.0e})",
                        "expressions compute layer sizes; keep them small",
                    )
            return bounded(_BINOPS[type(node.op)](left, right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = number(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
            left = number(node.left)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = number(comparator)
                if not _COMPARE[type(op)](left, right):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return ev(node.body) if ev(node.test) else ev(node.orelse)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name not in FUNCTIONS or node.keywords:
                raise ExpressionError(
                    f"unknown function '{name}' in '{shown}'",
                    did_you_mean(name, list(FUNCTIONS))
                    or f"the functions are {', '.join(FUNCTIONS)}",
                )
            fn, lo, hi = FUNCTIONS[name]
            if not lo <= len(node.args) <= hi or any(isinstance(a, ast.Starred) for a in node.args):
                raise ExpressionError(
                    f"{name}() takes {lo}" + (f" to {hi}" if hi > lo else "") + " numbers, "
                    f"received {len(node.args)} in '{shown}'"
                )
            return bounded(fn(*(number(a) for a in node.args)))
        raise ExpressionError(
            f"only arithmetic on parameters is allowed, received '{shown}'",
            "numbers, parameters, + - * / // % **, comparisons, a if c else b, "
            + ", ".join(FUNCTIONS),
        )

    try:
        with warnings.catch_warnings():  # "invalid decimal literal" must not reach the terminal
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ExpressionError(
            f"cannot read the expression '{shown}'", "write e.g. ${n*4}"
        ) from None
    value = ev(tree)
    return Computed(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _expression(match: re.Match) -> str:
    return match.group(1) if match.group(1) is not None else match.group(2)


def _as_text(value: Any) -> str:
    return str(int(value)) if isinstance(value, Computed) else str(value)


def substitute(raw: Any, params: dict[str, Any]) -> Any:
    """Replace placeholders in a value: a whole ``$n`` keeps its type, a partial one is text."""
    if isinstance(raw, str):
        if "$" not in raw:
            return raw
        whole = PLACEHOLDER.fullmatch(raw.strip())
        if whole:
            return evaluate(_expression(whole), params)
        return PLACEHOLDER.sub(lambda m: _as_text(evaluate(_expression(m), params)), raw)
    if isinstance(raw, list):
        return [substitute(x, params) for x in raw]
    if isinstance(raw, dict):
        return {k: substitute(v, params) for k, v in raw.items()}
    return raw


def parse_notation(text: str, params: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """``notation.parse`` with placeholders: each is read as one value, then evaluated.

    ``"3x3, ${4*n}, p=$pad"`` gives ``["3x3", 256]`` and ``{"p": [[0, 1], [0, 1]]}`` — a
    list parameter stays a list instead of going through text.
    """
    from .. import notation

    if "$" not in text:
        return notation.parse(text)
    found: list[re.Match] = []

    def protect(m: re.Match) -> str:
        found.append(m)
        return f"__cnnspec_{len(found) - 1}__"

    values, keywords = notation.parse(PLACEHOLDER.sub(protect, text))

    def value_of(m: re.Match) -> Any:
        return evaluate(_expression(m), params)

    def fill(v: Any) -> Any:
        if isinstance(v, list):
            return [fill(x) for x in v]
        if not isinstance(v, str) or "__cnnspec_" not in v:
            return v
        whole = _TOKEN.fullmatch(v)
        if whole:
            return value_of(found[int(whole.group(1))])
        out = parse_scalar(_TOKEN.sub(lambda t: _as_text(value_of(found[int(t.group(1))])), v))
        return Computed(out) if isinstance(out, int) and not isinstance(out, bool) else out

    return [fill(v) for v in values], {k: fill(v) for k, v in keywords.items()}


def plain(value: Any) -> Any:
    """Drop the :class:`Computed` marks (plain ints for Pydantic and the saved spec)."""
    if isinstance(value, Computed):
        return int(value)
    if isinstance(value, list):
        return [plain(x) for x in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value
