"""``$name`` / ``${...}`` placeholders inside lists, in every layer kind's every list field.

The cases are derived from the registry: every field whose JSON schema accepts a list (kernel
sizes, strides, padding pairs, shapes, ``from:`` ...) of every kind, with the value a sample of
``tests/test_layer_kinds.py`` gives it. Each number in the list becomes a placeholder, written in
the compact list form (``reshape: [1, 1, $c]``), the compact string form
(``conv: 3x3, 4, p=[[0, $a], [0, $b]]``) and the mapping form, at the top level and inside a
``define:``; the validated layers must equal the literal ones. A new kind (or a new list field)
is covered as soon as it has its sample.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_layer_kinds import SAMPLES

from cnnspec import yamlio
from cnnspec.spec import REGISTRY, loads_spec
from cnnspec.spec.expand import NESTED_KEYS


def _takes_list(schema: Any, defs: dict) -> bool:
    if not isinstance(schema, dict):
        return False
    if "$ref" in schema:
        return _takes_list(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs)
    if schema.get("type") == "array":
        return True
    return any(_takes_list(s, defs) for k in ("anyOf", "oneOf") for s in schema.get(k, []))


def _list_fields(cls) -> list[str]:
    schema = cls.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    if "properties" not in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    props = schema["properties"]
    return [n for n, s in props.items() if n not in NESTED_KEYS and _takes_list(s, defs)]


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _numbers(value: Any) -> bool:
    if isinstance(value, list):
        return any(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _items(layers: list[str]) -> list[Any]:
    return yamlio.loads("\n".join(f"- {item}" for item in layers)).data


#: Samples that fill a list field the samples of test_layer_kinds leave as a word (p=same).
EXTRA_SAMPLES = {"sepconv": ([8, 8, 4], ["sepconv: 3x3, 8, p=1, s=2x1"])}


def _samples(kind: str) -> list[tuple[list, list[str]]]:
    # A kind without a sample is reported by test_layer_kinds and by the coverage test here.
    return [table[kind] for table in (SAMPLES, EXTRA_SAMPLES) if kind in table]


def _cases() -> list[tuple[str, str, int, int]]:
    """(kind, field, sample, item index) for every list field some sample of the kind fills."""
    cases = []
    for kind, cls in REGISTRY.items():
        found = set()
        for k, (input_shape, layers) in enumerate(_samples(kind)):
            doc = {"name": "t", "input": input_shape, "layers": _items(layers)}
            spec = loads_spec(json.dumps(doc))
            for field in _list_fields(cls):
                for j, layer in enumerate(spec.layers):
                    value = layer.model_dump(by_alias=True)[field] if layer.kind == kind else None
                    listed = isinstance(value, (tuple, list)) and _numbers(_plain(value))
                    if field not in found and listed:
                        cases.append((kind, field, k, j))
                        found.add(field)
    return cases


CASES = _cases()
#: Fields no sample fills with a list of numbers (``from`` is a list only for merges).
UNCOVERED_OK = {"from"}


def test_every_list_field_of_every_kind_is_covered():
    covered = {(k, f) for k, f, _, _ in CASES}
    missing = [
        (kind, field)
        for kind, cls in REGISTRY.items()
        for field in _list_fields(cls)
        if (kind, field) not in covered and field not in UNCOVERED_OK
    ]
    assert not missing, f"add a sample with a list value to tests/test_layer_kinds.py: {missing}"
    assert len(CASES) >= 25  # conv K/s/p/d, reshape shape, zeropad p, normalize mean, ...


def _placeholders(value: Any, params: dict[str, Any]) -> Any:
    """Every number in ``value`` as a placeholder; ``$v0`` and ``${v1 * 1}`` alternate."""
    if isinstance(value, list):
        return [_placeholders(v, params) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        name = f"v{len(params)}"
        params[name] = value
        return f"${name}" if len(params) % 2 else f"${{{name} * 1}}"
    return value


def _notation(value: Any) -> str:
    """A value as the compact notation writes it (YAML flow; placeholders unquoted)."""
    if isinstance(value, list):
        return "[" + ", ".join(_notation(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _forms(kind: str, field: str, fields: dict, placed: Any) -> dict[str, Any]:
    """The item with ``field`` given by placeholders, in each form the kind allows."""
    cls = REGISTRY[kind]
    others = {k: v for k, v in fields.items() if k != field}
    forms = {"mapping": {kind: {**others, field: placed}}}
    keywords = [f"{k}={_notation(v)}" for k, v in others.items()]
    forms["compact keyword"] = {kind: ", ".join([*keywords, f"{field}={_notation(placed)}"])}
    if cls.positional[:1] == (field,):
        forms["compact positional"] = {kind: ", ".join([_notation(placed), *keywords])}
        if not others:
            forms["compact list"] = {kind: placed}
    return forms


@pytest.mark.parametrize("kind,field,k,j", CASES, ids=[f"{c[0]}.{c[1]}" for c in CASES])
def test_placeholders_in_a_list_field(kind, field, k, j):
    input_shape, layers = _samples(kind)[k]
    items = _items(layers)
    literal = loads_spec(json.dumps({"name": "t", "input": input_shape, "layers": items}))
    layer = literal.layers[j]
    fields = {
        k: _plain(v)
        for k, v in layer.model_dump(by_alias=True, exclude_defaults=True).items()
        if k not in ("kind", "name")
    }
    value = _plain(layer.model_dump(by_alias=True)[field])
    params: dict[str, Any] = {}
    placed = _placeholders(value, params)
    want = [x.model_dump() for x in literal.layers]
    name = {"name": layer.name} if layer.name else {}
    for form, item in _forms(kind, field, fields, placed).items():
        top = [*items[:j], {**item, **name}, *items[j + 1 :]]
        doc = {"name": "t", "input": input_shape, "params": params, "layers": top}
        got = loads_spec(json.dumps(doc))
        assert [x.model_dump() for x in got.layers] == want, form
        # The same item inside a define:, its placeholders filled from the define's params.
        define = {"blk": {"params": params, "layers": [item]}}
        doc = {"name": "t", "input": input_shape, "define": define, "layers": items[:j]}
        doc["layers"] = [*items[:j], {"blk": None, **name}, *items[j + 1 :]]
        got = loads_spec(json.dumps(doc))
        body = got.layers[j].body
        assert [x.model_dump() for x in body] == [want[j] | {"name": None}], form


def test_squeeze_excitation_block_with_list_placeholders():
    """The issue's SE block: reshape [1, 1, $c] and zeropad pairs inside a define."""
    spec = loads_spec(
        """
name: se
input: [8, 8, 16]
define:
  se:
    params: {c: 16, r: 4, p: 1}
    layers:
      - {conv: '1x1, $c', name: x}
      - gavgpool
      - reshape: [1, 1, $c]
      - conv: {K: [1, '${p}'], n_K: '${c // r}', act: relu}
      - conv: 1x1, $c, sigmoid
      - multiply: {from: [x, -1]}
      - zeropad: [[0, $p], [0, $p]]
      - reshape: ['${9 * 9}', 1, $c]
layers:
  - se: {c: 16}
  - flatten
  - dense: 2
"""
    )
    body = spec.layers[0].body
    assert body[2].shape == (1, 1, 16)
    assert body[3].K == (1, 1) and body[3].n_K == 4
    assert body[6].p == ((0, 1), (0, 1))
    assert body[7].shape == (81, 1, 16)
