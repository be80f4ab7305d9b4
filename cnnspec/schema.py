"""JSON Schema (2020-12) of the YAML language, for editors (yaml-language-server)."""

from __future__ import annotations

import json
from typing import Any

from .spec.layers import LayerSpec
from .spec.loader import COMMON_KEYS, REGISTRY
from .spec.model import ModelSpec

SCHEMA_ID = "https://cnnspec.dev/schema/cnnspec.schema.json"
_NESTED = {"body", "shortcut", "branches", "layers"}
_LAYERS_REF = {"$ref": "#/$defs/layers"}
_PLACEHOLDER = {"type": "string", "pattern": r"^\s*\$", "description": "a $name or ${...}"}


def _kind_schema(cls: type[LayerSpec]) -> dict[str, Any]:
    raw = cls.model_json_schema(by_alias=True)
    props = {k: v for k, v in raw.get("properties", {}).items() if k not in ("__src__", "kind")}
    for key in list(props):
        if key in ("body",):
            props[key] = _LAYERS_REF
        elif key == "shortcut":
            props[key] = {"anyOf": [{"enum": ["auto", "identity", "projection"]}, _LAYERS_REF]}
        elif key == "branches":
            props[key] = {"type": "array", "items": _LAYERS_REF, "minItems": 2}
    required = [r for r in raw.get("required", []) if r in props]
    mapping = {
        "type": "object",
        "properties": props,
        "additionalProperties": False,
        "required": required,
        "description": (cls.__doc__ or "").strip().splitlines()[0],
    }
    forms: list[dict[str, Any]] = [mapping]
    compact = ", ".join(cls.positional) + (", " if cls.positional else "") + "key=value, ..."
    forms.append({"type": ["string", "number"], "description": f"compact form: {compact}"})
    if not required:
        forms.append({"type": "null"})
    if "body" in props:
        forms.append(_LAYERS_REF)
    return {"anyOf": forms}


def _common() -> dict[str, Any]:
    field = LayerSpec.model_fields
    return {
        "name": {
            "type": "string",
            "pattern": field["name"].metadata[0].pattern if field["name"].metadata else "",
            "description": "layer name (unique)",
        },
        "from": {"$ref": "#/$defs/from"},
        "times": {
            "anyOf": [{"type": "integer", "minimum": 1}, _PLACEHOLDER],
            "description": "repeat this item; $i is the repeat index (0, 1, ...)",
        },
        "fixed": {"type": "boolean", "description": "a scale leaves this item's sizes alone"},
        "if": {
            "anyOf": [{"type": "boolean"}, _PLACEHOLDER],
            "description": "keep this item only when true, e.g. ${i > 0}",
        },
    }


def language_schema() -> dict[str, Any]:
    """The schema of a spec file as users write it (compact notation and mappings)."""
    top = ModelSpec.model_json_schema(by_alias=True)
    defs = {
        k: v
        for k, v in top.pop("$defs", {}).items()
        if k not in {c.__name__ for c in REGISTRY.values()}
    }
    from_schema = LayerSpec.model_json_schema(by_alias=True)["properties"]["from"]
    from_schema.pop("default", None)
    defs["from"] = from_schema
    common = _common()
    items: list[dict[str, Any]] = [
        {
            "type": "string",
            "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\s*:.*)?$",
            "description": "a kind or define: block with no values ('- flatten'), or 'kind: values'",
        }
    ]
    for kind, cls in REGISTRY.items():
        items.append(
            {
                "type": "object",
                "properties": {kind: _kind_schema(cls), **common},
                "required": [kind],
                "additionalProperties": False,
                "description": (cls.__doc__ or "").strip().splitlines()[0],
            }
        )
    items.append(
        {
            "type": "object",
            "description": "a block from define:, e.g. '- bottleneck: {n: 64, s: 2}'",
            "propertyNames": {
                "anyOf": [{"enum": list(COMMON_KEYS)}, {"not": {"enum": list(REGISTRY)}}]
            },
            "minProperties": 1,
        }
    )
    defs["layers"] = {"type": "array", "items": {"anyOf": items}}
    props = top["properties"]
    props["layers"] = _LAYERS_REF
    for name in ("HeadSpec", "DefineSpec"):
        if name in defs:
            defs[name]["properties"]["layers"] = (
                _LAYERS_REF
                if name == "HeadSpec"
                else {"type": "array", "description": "layers with $param placeholders"}
            )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cnnspec model spec",
        **{k: v for k, v in top.items() if k != "title"},
        "$defs": defs,
    }


def dumps() -> str:
    return json.dumps(language_schema(), indent=2, sort_keys=False) + "\n"
