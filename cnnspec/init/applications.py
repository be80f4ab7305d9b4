"""``keras:Name`` sources whose ImageNet model is not the model ``weights=None`` builds.

``cnnspec import keras:Name`` reads the architecture of ``keras.applications.Name(weights=None)``
(nothing to download), and the spec's ``init:`` then loads the ImageNet file. For EfficientNet
B0..B7 (V1) these are two different models: only with ``weights="imagenet"`` does Keras add a
per-channel ``Rescaling(1/sqrt(std))`` after its ``Normalization`` (the original implementation
divides by the variance, Keras' Normalization by its square root: tensorflow/tensorflow#49930).
:func:`imagenet_config` adds that layer to the config, so the imported spec is the ImageNet model.
EfficientNetV2 builds the same stem whatever its weights (its statistics are constants).
"""

from __future__ import annotations

import math
import re
from typing import Any

from .source import KERAS_PREFIX, tensor_refs

#: keras.applications.efficientnet.IMAGENET_STDDEV_RGB.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
#: The per-channel factor Keras' EfficientNet V1 applies after its Normalization for ImageNet.
IMAGENET_RESCALE = [1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB]
_EFFICIENTNET_V1 = re.compile(r"EfficientNetB[0-7]")


def needs_imagenet_rescale(source: str) -> bool:
    """Whether ``source`` is a ``keras:EfficientNetB0``..``B7`` source (ImageNet weights)."""
    return source.startswith(KERAS_PREFIX) and bool(
        _EFFICIENTNET_V1.fullmatch(source[len(KERAS_PREFIX) :])
    )


def imagenet_config(config: dict, source: str) -> dict:
    """``config`` (a functional model's, as Keras serialises it) as the model that ``source``'s
    ImageNet weights belong to: for EfficientNet V1, a per-channel Rescaling inserted after its
    Normalization, and whatever read the Normalization reading it. Other sources, or a config
    that has the Rescaling already, are returned as they are."""
    if not needs_imagenet_rescale(source):
        return config
    layers = config["config"]["layers"]
    norms = [i for i, item in enumerate(layers) if item.get("class_name") == "Normalization"]
    if len(norms) != 1:
        return config  # not the stem keras.applications builds: imported as it is
    norm = layers[norms[0]]["name"]
    readers = [item for item in layers if norm in _reads(item)]
    if any(item.get("class_name") == "Rescaling" for item in readers):
        return config
    taken = {item["name"] for item in layers}
    name = next(n for k in range(1, len(taken) + 2) if (n := f"rescaling_{k}") not in taken)
    rescale = {
        "module": "keras.layers",
        "class_name": "Rescaling",
        "config": {"name": name, "scale": list(IMAGENET_RESCALE), "offset": 0.0},
        "registered_name": None,
        "name": name,
        "inbound_nodes": [{"args": [_tensor_like(layers[norms[0]], norm)], "kwargs": {}}],
    }
    out = [
        {**item, "inbound_nodes": _retarget(item["inbound_nodes"], norm, name)}
        if "inbound_nodes" in item
        else item
        for item in layers
    ]
    out.insert(norms[0] + 1, rescale)
    return {**config, "config": {**config["config"], "layers": out}}


def _reads(item: dict) -> list[str]:
    return [t for node in item.get("inbound_nodes", []) for t in tensor_refs(node)]


def _tensor_like(norm: dict, name: str) -> dict:
    """A serialised tensor of layer ``name`` with the shape the Normalization read (its own)."""
    arg = next(iter(norm.get("inbound_nodes", [{}])[0].get("args", [])), None)
    config = dict(arg.get("config", {})) if isinstance(arg, dict) else {}
    return {"class_name": "__keras_tensor__", "config": {**config, "keras_history": [name, 0, 0]}}


def _retarget(value: Any, old: str, new: str) -> Any:
    """A copy of ``value`` with every tensor of layer ``old`` a tensor of layer ``new``."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            history = list(value["config"]["keras_history"])
            if history[0] == old:
                history[0] = new
            return {**value, "config": {**value["config"], "keras_history": history}}
        return {k: _retarget(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_retarget(v, old, new) for v in value]
    return value


def imagenet_stem_problem(spec: Any, table: Any, source: str) -> str | None:
    """What keeps ``spec`` from being the model of ``source``'s ImageNet weights (its
    transfer ``table``), or None: for EfficientNet V1, a normalize that loads the source's
    statistics must be followed by Keras' per-channel rescale (and only by it)."""
    if not needs_imagenet_rescale(source):
        return None
    nodes = spec.graph.nodes
    for row in table.rows:
        if row.kind != "normalize" or row.status != "loaded":
            continue
        readers = [n for n in nodes.values() if n.spec is not None and row.layer in n.inputs]
        if len(readers) == 1 and _is_imagenet_rescale(readers[0].spec):
            continue
        found = ", ".join(f"'{n.name}' ({n.spec.kind_name})" for n in readers) or "nothing"
        return f"spec layer '{row.layer}' (normalize) is read by {found}"
    return None


def _is_imagenet_rescale(layer: Any) -> bool:
    scale, offset = getattr(layer, "scale", None), getattr(layer, "offset", None)
    if getattr(layer, "kind", None) != "rescale" or not isinstance(scale, list):
        return False
    offsets = offset if isinstance(offset, list) else [offset]
    return (
        len(scale) == len(IMAGENET_RESCALE)
        and all(
            math.isclose(a, b, rel_tol=1e-6) for a, b in zip(scale, IMAGENET_RESCALE, strict=True)
        )
        and all(o == 0 for o in offsets)
    )


def check_imagenet_stem(spec: Any, table: Any, source: str) -> None:
    """RunError (one line) when ``spec`` would silently differ from the ImageNet model of a
    ``keras:EfficientNetB*`` source (see :func:`imagenet_stem_problem`)."""
    from ..errors import RunError

    problem = imagenet_stem_problem(spec, table, source)
    if problem is None:
        return
    factors = ", ".join(repr(f) for f in IMAGENET_RESCALE)
    raise RunError(
        f"init: {source}'s ImageNet weights need Keras' per-channel rescale "
        f"(1/sqrt(std)) right after the normalize, and {problem}",
        hint=f"insert '- rescale: [{factors}]' after it (cnnspec import {source} writes it)",
    )
