"""Field types of the language: kernel sizes, strides, padding, activations, layer references.

Each type accepts the compact forms users write (``3``, ``"3x3"``, ``[1, 7]``, ``same``) and
normalises them, with error messages that name the field and what was received.
"""

from __future__ import annotations

import functools
import re
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import PlainValidator, WithJsonSchema

ActivationName = Literal[
    "relu",
    "tanh",
    "sigmoid",
    "softmax",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "swish",
    "relu6",
    "hard_swish",
    "hard_sigmoid",
    "softplus",
    "linear",
]
#: The activation names, in the order above.
ACTIVATIONS: tuple[str, ...] = get_args(ActivationName)
#: Activations that take one number, written ``leaky_relu(0.1)``: name -> (Keras' argument,
#: smallest, largest). Darknet/YOLO use a leaky slope of 0.1, Keras' ``leaky_relu`` 0.2.
PARAMETRISED: dict[str, tuple[str, float, float]] = {"leaky_relu": ("negative_slope", 0.0, 1.0)}
_PARAM_RE = re.compile(r"^\s*([a-z_0-9]+)\s*\(\s*([^()]*?)\s*\)\s*$")


def parse_activation(value: str) -> tuple[str, float | None]:
    """``'relu'`` -> ``('relu', None)``; ``'leaky_relu(0.1)'`` -> ``('leaky_relu', 0.1)``."""
    if value in ACTIVATIONS:
        return value, None
    match = _PARAM_RE.match(value) if isinstance(value, str) else None
    if match is None or match[1] not in PARAMETRISED:
        from ..errors import did_you_mean

        word = match[1] if match else value
        guess = did_you_mean(word, ACTIVATIONS) if isinstance(word, str) else ""
        raise ValueError(
            f"unknown activation, received {value!r} ("
            + (guess or f"one of {', '.join(ACTIVATIONS)}, or leaky_relu(slope)")
            + ")"
        )
    name, text = match[1], match[2]
    arg, low, high = PARAMETRISED[name]
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not low <= number <= high:  # NaN too
        raise ValueError(
            f"{name}'s {arg} must be a number from {low:g} to {high:g}, received {value!r} "
            f"(e.g. {name}(0.1))"
        )
    return name, number


def is_activation(value: Any) -> bool:
    """Whether ``value`` is an activation as written in the notation: ``relu``, ``leaky_relu(0.1)``."""
    if not isinstance(value, str):
        return False
    try:
        parse_activation(value.strip())
    except ValueError:
        return False
    return True


def _activation(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected an activation name, received {value!r}")
    name, number = parse_activation(value.strip())
    return name if number is None else f"{name}({number:g})"


#: An activation: a name (``relu``) or a name with its parameter (``leaky_relu(0.1)``).
Activation = Annotated[
    str,
    PlainValidator(_activation),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(ACTIVATIONS)},
                {"type": "string", "pattern": r"^(leaky_relu)\(\s*[0-9.eE+-]+\s*\)$"},
            ]
        }
    ),
]

_SIZES_RE = re.compile(r"^\s*\d+(\s*x\s*\d+)*\s*$")
NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def sizes_parser(minimum: int):
    def parse(value: Any) -> tuple[int, ...]:
        if _is_int(value):
            out = (value,)
        elif isinstance(value, str) and _SIZES_RE.match(value):
            out = tuple(int(p) for p in value.split("x"))
        elif isinstance(value, (list, tuple)) and value and all(_is_int(v) for v in value):
            out = tuple(value)
        else:
            raise ValueError(f"expected an int, 'AxB' or a list of ints, received {value!r}")
        if any(v < minimum for v in out):
            what = "positive" if minimum == 1 else f">= {minimum}"
            raise ValueError(f"must be {what}, received {value!r}")
        return out

    return parse


_SIZES_SCHEMA = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\d+(x\d+)*$"},
        {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
    ]
}

#: A per-direction size: ``3`` (all directions), ``"1x7"`` or ``[1, 7]``.
Sizes = Annotated[tuple[int, ...], PlainValidator(sizes_parser(1)), WithJsonSchema(_SIZES_SCHEMA)]


def _padding(value: Any) -> str | tuple:
    if isinstance(value, str) and value.strip() in ("same", "valid"):
        return value.strip()
    if _is_int(value) or (isinstance(value, str) and _SIZES_RE.match(value)):
        return sizes_parser(0)(value)
    if isinstance(value, (list, tuple)) and value:
        if all(_is_int(v) for v in value):
            return sizes_parser(0)(list(value))
        if all(
            isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and x >= 0 for x in v)
            for v in value
        ):
            return tuple(tuple(v) for v in value)
    raise ValueError(
        "expected same, valid, a number of zeros (p=1), one per direction (1x2) "
        f"or [before, after] pairs, received {value!r}"
    )


Padding = Annotated[
    str | tuple,
    PlainValidator(_padding),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": ["same", "valid"]},
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\d+(x\d+)*$"},
                {
                    "type": "array",
                    "items": {
                        "anyOf": [
                            {"type": "integer", "minimum": 0},
                            {
                                "type": "array",
                                "items": {"type": "integer"},
                                "minItems": 2,
                                "maxItems": 2,
                            },
                        ]
                    },
                },
            ]
        }
    ),
]


def _ref(value: Any) -> str | int | tuple:
    def one(v: Any) -> str | int:
        if _is_int(v):
            if v >= 0:
                raise ValueError(
                    f"a numeric from: must be negative (-1 is the previous layer), received {v}"
                )
            return v
        if isinstance(v, str) and v:
            return v
        raise ValueError(f"expected a layer name or a negative index, received {v!r}")

    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("expected at least one input, received []")
        return tuple(one(v) for v in value)
    return one(value)


#: ``from:`` a layer name, a negative index (-1 = previous), or a list of them (merges).
FromRef = Annotated[
    str | int | tuple,
    PlainValidator(_ref),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "integer", "maximum": -1},
                {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer", "maximum": -1}]},
                },
            ]
        }
    ),
]


# --- no silent coercion ------------------------------------------------------------------------


class FieldValueError(ValueError):
    """A value error about one field of a mapping, raised by a model-level validator.

    ``problems`` locates it at the field (a model validator's own errors point at the model).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@functools.cache
def _accepts(annotation: Any) -> frozenset:
    """The scalar types a field annotation accepts (``object`` when it is not a plain scalar)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _accepts(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return frozenset().union(*(_accepts(a) for a in get_args(annotation)))
    if origin is Literal:
        return frozenset(type(a) for a in get_args(annotation))
    if annotation is type(None):
        return frozenset({type(None)})
    if annotation in (bool, int, float, str):
        return frozenset({annotation})
    return frozenset({object})


def _items_of(annotation: Any) -> Any:
    """The item annotation of ``tuple[X, ...]`` / ``list[X]`` (None for anything else)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _items_of(get_args(annotation)[0])
    args = get_args(annotation)
    if origin is list and args:
        return args[0]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def strict_scalar(annotation: Any, value: Any) -> Any:
    """Refuse what Pydantic's lax mode would coerce: ``'yes'`` for a bool, ``true`` for a number.

    YAML 1.2 reads ``yes`` as a string, and a quoted ``'true'`` is a string too: taking either as
    a bool, or a bool as the number 1, would be a silent wrong result.
    """
    accepts = _accepts(annotation)
    if object not in accepts:
        if isinstance(value, bool):
            if bool not in accepts and accepts & {int, float}:
                raise ValueError(f"expected a number, received {str(value).lower()}")
        elif bool in accepts and value is not None and not accepts & {int, float, str}:
            raise ValueError(f"expected true or false, received {value!r}")
        return value
    item = _items_of(annotation)
    if item is not None and isinstance(value, (list, tuple)):
        for v in value:
            strict_scalar(item, v)
    return value
