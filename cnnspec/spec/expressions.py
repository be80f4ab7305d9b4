"""``$n`` / ``${...}`` placeholders: bounded arithmetic on parameters, read with ``ast`` (no eval).

An expression may use numbers, parameter names, ``+ - * / // % **``, comparisons, ``and`` /
``or`` / ``not`` with ``true`` / ``false``, ``a if cond else b`` and the functions of
:data:`FUNCTIONS` (``min``, ``max``, ``round``, ``floor``, ``ceil``, ``int``, ``abs``). Every
amount is bounded *before* the work is done: the text is at most :data:`MAX_EXPRESSION`
characters, every value at most :data:`MAX_VALUE` in magnitude, a power is refused before it is
computed when its result would exceed that, and each function checks its arguments before the
call (``round(n, d)`` takes at most :data:`MAX_DIGITS` digits either way).
"""

from __future__ import annotations

import ast
import math
import operator
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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


#: ``round(x, d)``: the digits ``d`` a call may ask for. Every value is at most
#: :data:`MAX_VALUE` (10**15), so more digits change nothing, and ``round(n, -10**15)`` on an
#: int would build 10**(10**15) before answering.
MAX_DIGITS = 15


def _check_round(args: list[Any]) -> str | None:
    if len(args) < 2:
        return None
    digits = args[1]
    if not float(digits).is_integer():
        return f"round()'s digits must be a whole number, received {digits!r}"
    if abs(digits) > MAX_DIGITS:
        return f"round() takes from -{MAX_DIGITS} to {MAX_DIGITS} digits, received {int(digits)}"
    return None


@dataclass(frozen=True)
class Function:
    """A function expressions may call: its arity, and a check of its arguments.

    ``check`` runs on the (bounded) argument values *before* the call and returns why they are
    refused, or None: no call may cost more than microseconds.
    """

    fn: Callable[..., Any]
    least: int
    most: int
    check: Callable[[list[Any]], str | None] | None = None


#: The functions an expression may call, by name.
FUNCTIONS: dict[str, Function] = {
    "min": Function(min, 2, 64),
    "max": Function(max, 2, 64),
    "round": Function(_round, 1, 2, _check_round),
    "floor": Function(math.floor, 1, 1),
    "ceil": Function(math.ceil, 1, 1),
    "int": Function(int, 1, 1),
    "abs": Function(abs, 1, 1),
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
#: The words for true and false, as YAML and as Python write them.
_BOOLEANS = {"true": True, "false": False, "True": True, "False": False}
_CONDITIONS_HINT = "combine conditions with and / or / not, e.g. ${i > 0 and n > 1}"


class _Evaluator:
    """Walks an expression's syntax tree; every value is bounded as it is produced."""

    def __init__(self, shown: str, params: dict[str, Any]) -> None:
        self.shown = shown
        self.params = params

    def out_of_range(self) -> ExpressionError:
        return ExpressionError(
            f"'{self.shown}' goes out of range (beyond {MAX_VALUE:.0e})",
            "expressions compute layer sizes; keep them small",
        )

    def bounded(self, value: Any) -> Any:
        if _is_number(value):
            if isinstance(value, float) and not math.isfinite(value) or abs(value) > MAX_VALUE:
                raise self.out_of_range()
            if isinstance(value, float) and value.is_integer():
                return int(value)
        return value

    def number(self, node: ast.AST) -> int | float:
        value = self.ev(node)
        if isinstance(value, bool):
            raise ExpressionError(
                # Not the value: copies made by times: then fail alike and report once.
                f"'{self.shown}' computes with a condition (true or false) where a number is "
                "needed",
                _CONDITIONS_HINT,
            )
        if not _is_number(value):
            raise ExpressionError(
                f"'{self.shown}' computes with {value!r}, which is not a number",
                "pass a number for the parameter",
            )
        return value

    def condition(self, node: ast.AST, word: str) -> bool:
        value = self.ev(node)
        if not isinstance(value, bool):
            raise ExpressionError(
                f"'{word}' takes conditions (true or false), received {value!r} in '{self.shown}'",
                "compare a number, e.g. ${n > 0 " + word + " i < 2}"
                if word != "not"
                else "compare a number, e.g. ${not n > 0}",
            )
        return value

    def refused(self) -> ExpressionError:
        return ExpressionError(
            f"only arithmetic on parameters is allowed, received '{self.shown}'",
            "numbers, parameters, + - * / // % **, comparisons, and / or / not, "
            "a if c else b, " + ", ".join(FUNCTIONS),
        )

    def ev(self, node: ast.AST) -> Any:
        handler = _HANDLERS.get(type(node))
        if handler is None:
            raise self.refused()
        return handler(self, node)

    def constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, bool):
            return node.value
        if _is_number(node.value):
            return self.bounded(node.value)
        raise self.refused()  # a string or None

    def name(self, node: ast.Name) -> Any:
        if node.id in self.params:
            return self.params[node.id]
        if node.id in _BOOLEANS:
            return _BOOLEANS[node.id]
        hint = did_you_mean(node.id, list(self.params))
        if node.id == "i":
            hint = "$i is the repeat index (0, 1, ...) inside an item with times:"
        raise ExpressionError(
            f"unknown parameter '{node.id}' in '{self.shown}'",
            hint or f"parameters here: {', '.join(self.params) or 'none'}",
        )

    def binop(self, node: ast.BinOp) -> Any:
        if type(node.op) not in _BINOPS:
            raise self.refused()
        left, right = self.number(node.left), self.number(node.right)
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ExpressionError(f"division by zero in '{self.shown}'")
        if isinstance(node.op, ast.Pow):
            if left < 0 and not float(right).is_integer():
                raise ExpressionError(
                    f"'{self.shown}' takes a fractional power of a negative number"
                )
            if left == 0 and right < 0:
                raise ExpressionError(f"division by zero in '{self.shown}'")
            # log2 of the result, before computing it: 10**5000 never gets built.
            if left != 0 and right * math.log2(abs(left)) > math.log2(MAX_VALUE):
                raise self.out_of_range()
        return self.bounded(_BINOPS[type(node.op)](left, right))

    def unary(self, node: ast.UnaryOp) -> Any:
        if isinstance(node.op, ast.Not):
            return not self.condition(node.operand, "not")
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise self.refused()
        value = self.number(node.operand)
        return -value if isinstance(node.op, ast.USub) else value

    def boolean(self, node: ast.BoolOp) -> bool:
        # Short-circuit as Python does: ${n > 0 and 64 // n > 2} never divides by zero.
        word = "and" if isinstance(node.op, ast.And) else "or"
        for operand in node.values:
            value = self.condition(operand, word)
            if value is (word == "or"):
                return value
        return word == "and"

    def compare(self, node: ast.Compare) -> bool:
        if not all(type(op) in _COMPARE for op in node.ops):
            raise self.refused()
        left = self.number(node.left)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.number(comparator)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def if_else(self, node: ast.IfExp) -> Any:
        return self.ev(node.body) if self.ev(node.test) else self.ev(node.orelse)

    def call(self, node: ast.Call) -> Any:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        if name not in FUNCTIONS or node.keywords:
            raise ExpressionError(
                f"unknown function '{name}' in '{self.shown}'",
                did_you_mean(name, list(FUNCTIONS)) or f"the functions are {', '.join(FUNCTIONS)}",
            )
        function = FUNCTIONS[name]
        lo, hi = function.least, function.most
        if not lo <= len(node.args) <= hi or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(
                f"{name}() takes {lo}" + (f" to {hi}" if hi > lo else "") + " numbers, "
                f"received {len(node.args)} in '{self.shown}'"
            )
        args = [self.number(a) for a in node.args]
        refused = function.check(args) if function.check else None
        if refused:
            raise ExpressionError(f"{refused} in '{self.shown}'", "e.g. round(n / 3, 2)")
        return self.bounded(function.fn(*args))


_HANDLERS: dict[type, Callable[[_Evaluator, Any], Any]] = {
    ast.Expression: lambda e, node: e.ev(node.body),
    ast.Constant: _Evaluator.constant,
    ast.Name: _Evaluator.name,
    ast.BinOp: _Evaluator.binop,
    ast.UnaryOp: _Evaluator.unary,
    ast.BoolOp: _Evaluator.boolean,
    ast.Compare: _Evaluator.compare,
    ast.IfExp: _Evaluator.if_else,
    ast.Call: _Evaluator.call,
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
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" must not reach the terminal
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ExpressionError(
            f"cannot read the expression '{shown}'", "write e.g. ${n*4}"
        ) from None
    value = _Evaluator(shown, params).ev(tree)
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
