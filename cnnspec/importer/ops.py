"""Keras operations written as Python arithmetic on tensors (``x + 3.0``), in a config.

Keras 3 saves ``relu6(x + 3.0) * (1 / 6)`` (MobileNetV3's hard sigmoid) as three nodes, two of
them ``keras.src.ops`` operations with a constant argument. The language has no constant
arithmetic, but it has the activation they compute: this pass rewrites the exact pattern into
one ``Activation('hard_sigmoid')`` node (Keras' own definition, ``relu6(x + 3) / 6``). Any other
operation with a constant is refused by :func:`constant_of`'s caller, never approximated.
"""

from __future__ import annotations

import math
from typing import Any

from ..init.source import tensor_refs


def is_op(item: dict) -> bool:
    """A node made by an operation on tensors, not a layer (``module: keras.src.ops.*``)."""
    return str(item.get("module", "")).startswith("keras.src.ops")


def constant_of(item: dict) -> float | None:
    """The one constant number among an operation node's arguments, or None."""
    if not is_op(item):
        return None
    for node in item.get("inbound_nodes", []):
        for arg in node.get("args", []):
            if isinstance(arg, (int, float)) and not isinstance(arg, bool):
                return float(arg)
    return None


def _tensor(name: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"keras_history": [name, 0, 0]}}


def _parents(item: dict) -> list[str]:
    return list(dict.fromkeys(t for n in item.get("inbound_nodes", []) for t in tensor_refs(n)))


def _is_relu6(item: dict) -> bool:
    cfg = item.get("config", {})
    return (
        item.get("class_name") == "ReLU"
        and cfg.get("max_value") == 6.0
        and not cfg.get("negative_slope")
        and not cfg.get("threshold")
    )


def _only(names: list[str]) -> str | None:
    return names[0] if len(names) == 1 else None


def fuse_hard_sigmoid(layers: list[dict]) -> list[dict]:
    """``Multiply(ReLU(6)(Add(x, 3.0)), 1/6)`` -> one ``Activation('hard_sigmoid')`` of x,
    named as the multiply (what later nodes read); the add and the ReLU must feed nothing else."""
    by_name = {item["name"]: item for item in layers}
    consumers: dict[str, int] = {}
    for item in layers:
        for p in _parents(item):
            consumers[p] = consumers.get(p, 0) + 1
    dropped: set[str] = set()
    replaced: dict[str, dict] = {}
    for item in layers:
        if item["class_name"] != "Multiply" or not math.isclose(
            constant_of(item) or 0.0, 1 / 6, rel_tol=1e-9
        ):
            continue
        relu = _only(_parents(item))
        relu_item = by_name.get(relu or "")
        if relu_item is None or not _is_relu6(relu_item) or consumers.get(relu) != 1:
            continue
        add = _only(_parents(relu_item))
        add_item = by_name.get(add or "")
        if (
            add_item is None
            or add_item["class_name"] != "Add"
            or constant_of(add_item) != 3.0
            or consumers.get(add) != 1
            or len(_parents(add_item)) != 1
        ):
            continue
        source = _parents(add_item)[0]
        replaced[item["name"]] = _activation(item["name"], "hard_sigmoid", source)
        dropped |= {relu, add}
    return [replaced.get(i["name"], i) for i in layers if i["name"] not in dropped]


def _activation(name: str, activation: str, source: str) -> dict[str, Any]:
    return {
        "class_name": "Activation",
        "module": "keras.layers",
        "name": name,
        "config": {"name": name, "activation": activation},
        "inbound_nodes": [{"args": [_tensor(source)], "kwargs": {}}],
    }
