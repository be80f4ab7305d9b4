"""``cnnspec import``: a Keras functional model's config.json -> a spec in the project's notation.

:func:`convert` makes one item per layer under its Keras name (``from:`` where an item reads
another than the previous one; a conv, dense or depthwise conv and an activation only it feeds
are one row; a leading ``Rescaling(1/255)`` or ``Rescaling(1/127.5, -1)`` is
``preprocess: unit | symmetric``), checked exact by name. :func:`import_text` then writes the
most compact form that is the same model (:mod:`.compact`: conv + bn + act defines;
:mod:`.blocks`: residual:/parallel: blocks, generated defines, times:), checked against it.
A layer the language cannot express is refused with one line: never approximated."""

from __future__ import annotations

from typing import Any

from ..errors import RunError
from ..init.applications import imagenet_config
from ..init.source import flatten_nested, output_names, tensor_refs
from .check import SourceWeights, check_exact
from .layers import IDENTITY, Refused, rule_for
from .ops import constant_of, fuse_hard_sigmoid

_FOLDS_ACT = ("conv", "dwconv", "sepconv", "dense")
_PREPROCESS = {(1 / 255, 0.0): "unit", (1 / 127.5, -1.0): "symmetric"}


def _layers(config: dict) -> list[dict]:
    if config.get("class_name") not in ("Functional", "Model"):
        raise RunError(
            f"import: a {config.get('class_name')} model is not a functional model",
            hint="save a functional model (keras.Model(inputs, outputs)) as .keras",
        )
    return flatten_nested(config["config"]["layers"])


def input_rank(item: dict) -> int | None:
    """The rank (batch included) of the first tensor a layer reads, when the config says."""
    for node in item.get("inbound_nodes", []):
        for arg in node.get("args", []):
            if isinstance(arg, dict) and isinstance(arg.get("config", {}).get("shape"), list):
                return len(arg["config"]["shape"])
    return None


def _input_shape(item: dict) -> list[int]:
    cfg = item["config"]
    shape = (cfg.get("batch_shape") or [None, *cfg.get("shape", [])])[1:]
    if not shape or any(d is None for d in shape):
        raise RunError(
            f"import: the input {item['name']} has an open shape {shape}",
            hint="save the model with a fixed input size (input_shape=(224, 224, 3))",
        )
    return list(shape)


def convert(config: dict, source: str, name: str | None = None) -> dict[str, Any]:
    """The spec (as YAML data) of a functional model's config; RunError naming a refused layer.

    A ``keras:`` source's config is first made the model its ImageNet weights belong to
    (:func:`.applications.imagenet_config`: EfficientNet V1's per-channel rescale)."""
    layers = fuse_hard_sigmoid(_layers(imagenet_config(config, source)))
    inputs = [item for item in layers if item["class_name"] == "InputLayer"]
    if len(inputs) != 1:
        raise RunError(f"import: the model has {len(inputs)} inputs; a spec has one")
    parents, consumers = _graph(layers)
    outputs = output_names(config["config"].get("output_layers"))
    if len(outputs) != 1:
        raise RunError(f"import: the model has {len(outputs)} outputs; a spec has one main output")
    alias = {inputs[0]["name"]: "input"}
    rows: list[dict] = []
    preprocess = "none"
    previous = "input"
    for item in layers:
        lname, cls = item["name"], item["class_name"]
        if cls == "InputLayer":
            continue
        row = _row(item)
        srcs = [alias.get(p, p) for p in parents[lname]]
        kind = next(iter(row))
        if kind == "dense" and (input_rank(item) or 2) > 2:
            row["dense"]["pointwise"] = True  # a Dense on a feature map: at every position
        # Preprocessing straight after the input: the spec's own preprocess: field.
        if (
            kind == "rescale"
            and srcs == ["input"]
            and not rows
            and preprocess == "none"
            and not any(isinstance(v, list) for v in row[kind].values())
        ):
            key = (round(row[kind]["scale"], 9), row[kind]["offset"])
            found = next((v for k, v in _PREPROCESS.items() if (round(k[0], 9), k[1]) == key), None)
            if found:
                preprocess = found
                alias[lname] = "input"
                continue
        # An activation fed only by the row before it, which has none yet: one row.
        if (
            kind == "act"
            and rows
            and srcs == [previous]
            and consumers.get(_keras_name(rows[-1]), 0) == 1
        ):
            last = rows[-1]
            last_kind = next(k for k in last if k not in ("name", "from"))
            if last_kind in _FOLDS_ACT and last[last_kind].get("act") is None:
                last[last_kind]["act"] = row["act"]
                alias[lname] = last["name"]
                previous = last["name"]
                continue
        if kind == IDENTITY and len(srcs) == 1:
            alias[lname] = srcs[0]
            continue
        fields = row[kind]
        row = {kind: _compact(kind, fields) if isinstance(fields, dict) else fields, "name": lname}
        if srcs != [previous]:
            row["from"] = srcs[0] if len(srcs) == 1 else srcs
        rows.append(row)
        previous = lname
    if alias.get(outputs[0], outputs[0]) != previous:
        raise RunError(f"import: the output {outputs[0]} is not the last layer of the model")
    return {
        "name": _spec_name(name or config.get("config", {}).get("name") or "imported"),
        "input": _input_shape(inputs[0]),
        "preprocess": preprocess,
        "init": {"from": source},
        "layers": rows,
    }


def _graph(layers: list[dict]) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Each layer's parents (layer names, in order) and how many layers read each one."""
    parents = {
        item["name"]: list(
            dict.fromkeys(t for n in item.get("inbound_nodes", []) for t in tensor_refs(n))
        )
        for item in layers
    }
    consumers: dict[str, int] = {}
    for ps in parents.values():
        for p in ps:
            consumers[p] = consumers.get(p, 0) + 1
    return parents, consumers


def _row(item: dict) -> dict:
    """One layer's spec item by its class's rule; RunError naming it when it is refused."""
    lname, cls = item["name"], item["class_name"]
    constant = constant_of(item)
    if constant is not None:
        raise RunError(
            f"import: layer '{lname}' ({cls}): arithmetic with the constant {constant} "
            "cannot be written in a spec",
            hint="nearest supported form: a layer (rescale:, act:) that computes it",
        )
    try:
        return rule_for(cls)(item["config"])
    except Refused as exc:
        raise RunError(
            f"import: layer '{lname}' ({cls}): {exc.reason} cannot be written in a spec",
            hint=f"nearest supported form: {exc.nearest}" if exc.nearest else "",
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(f"import: layer '{lname}' ({cls}): unreadable config ({exc})") from None


def _keras_name(row: dict) -> str:
    return row["name"]


def _compact(kind: str, fields: dict) -> dict:
    """Leave out settings at their spec default (no activation, bias/center/scale on, p=valid,
    Keras' batch-norm momentum; s=1 but for pooling, whose stride defaults to its window)."""
    defaults = {"act": None, "bias": True, "p": "valid"}
    if kind == "bn":
        defaults.update(center=True, scale=True, momentum=0.99, eps=1e-3)
    if kind == "rescale":  # its scale is a factor (1.0 == True): never left out
        defaults = {"offset": 0.0}
    if not kind.endswith("pool"):
        defaults["s"] = 1
    return {k: v for k, v in fields.items() if not (k in defaults and v == defaults[k])}


def _spec_name(name: str) -> str:
    import re

    out = re.sub(r"[^A-Za-z0-9_]", "_", name).lower()
    return out if out[:1].isalpha() else f"m_{out}"


def import_text(
    config: dict, weights: list[SourceWeights], source: str, header: str = ""
) -> tuple[str, Any]:
    """The YAML text of the spec of ``config`` and the loaded spec, checked exact against the
    source's ``weights`` (RunError naming the first layer that differs; nothing is written).

    The compact form (conv + bn + act rows as uses of generated defines) is written when it
    loads and is exact; else the plain one-row-per-layer form, under the same check."""
    from .blocks import compact_blocks
    from .compact import fold, to_text

    data = convert(config, source)
    head = f"# {header} by cnnspec import\n" if header else ""
    plain_text = to_text(data, head)
    plain = _checked(plain_text, weights, source)
    # Most compact first: blocks, defines and times: without Keras' names (matched by
    # structure); then conv + bn + act defines keeping every name; then one row per layer.
    defines, rows = fold(data["layers"], keep_names=False)
    defines, rows = compact_blocks(rows, defines)
    candidates = [{**data, "define": defines, "layers": rows}]
    defines, rows = fold(data["layers"])
    if defines:
        candidates.append({**data, "define": defines, "layers": rows})
    for compact in candidates:
        text = to_text(compact, head)
        if _lines(text) >= _lines(plain_text):  # no shorter: keep every Keras name
            continue
        found = _same_model(text, plain[1], weights, source)
        if found is not None:
            return found
    return plain


def _lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.strip())


def _checked(text: str, weights: list[SourceWeights], source: str) -> tuple[str, Any]:
    from ..errors import SpecError
    from ..spec import loads_spec

    try:
        spec = loads_spec(text, "<imported spec>")
    except SpecError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid"
        raise RunError(f"import: {source}: the spec made from it does not load ({first})") from None
    check_exact(spec, weights, source)
    return text, spec


def _same_model(
    text: str, plain: Any, weights: list[SourceWeights], source: str
) -> tuple[str, Any] | None:
    """(text, spec) when the compact ``text`` loads, is the same graph as the exact ``plain``
    spec and init: pairs each of its weight layers with the plain one's source layer; else None."""
    from ..errors import SpecError
    from ..spec import loads_spec
    from .check import same_pairs

    try:
        spec = loads_spec(text, "<imported spec>")
    except SpecError:
        return None
    return (text, spec) if same_pairs(spec, plain, weights, source) else None
