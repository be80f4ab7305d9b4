"""One rule per Keras layer class: its config -> one spec item (a registry, not if-chains).

A class or a setting the language cannot express raises :class:`Refused` naming the layer,
its class and the nearest supported form: an import is exact or it is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..spec.types import ACTIVATIONS


class Refused(Exception):
    """A layer the spec language cannot express exactly."""

    def __init__(self, reason: str, nearest: str = "") -> None:
        super().__init__(reason)
        self.reason, self.nearest = reason, nearest


#: Keras activation names -> the spec's.
_ACT_NAMES = {
    "silu": "swish",
    "swish": "swish",
    "hard_silu": "hard_swish",
    "hard_swish": "hard_swish",
}


def act(name: Any) -> str | None:
    if isinstance(name, dict):  # a serialised function
        name = name.get("config", name.get("class_name"))
    if name in (None, "linear"):
        return None
    name = _ACT_NAMES.get(name, name)
    if name not in ACTIVATIONS:
        raise Refused(f"activation '{name}'", f"one of {', '.join(ACTIVATIONS)}")
    return name


def _size(v: Any) -> Any:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return v[0] if len(set(v)) == 1 else "x".join(map(str, v))


def _channels_last(cfg: dict) -> None:
    if cfg.get("data_format") not in (None, "channels_last"):
        raise Refused(f"data_format={cfg['data_format']}", "channels_last")


def _window(cfg: dict, k: str = "kernel_size") -> dict:
    _channels_last(cfg)
    out = {
        "K": _size(cfg[k]),
        "s": _size(cfg.get("strides") or cfg[k]),
        "p": cfg.get("padding", "valid"),
    }
    if (
        cfg.get("dilation_rate") not in (None, 1, [1, 1], (1, 1))
        and _size(cfg["dilation_rate"]) != 1
    ):
        out["d"] = _size(cfg["dilation_rate"])
    return out


def _conv(cfg: dict) -> dict:
    out = {
        **_window(cfg),
        "n_K": cfg["filters"],
        "act": act(cfg.get("activation")),
        "bias": cfg.get("use_bias", True),
    }
    if cfg.get("groups", 1) != 1:
        out["groups"] = cfg["groups"]
    return {"conv": out}


def _dwconv(cfg: dict) -> dict:
    out = {**_window(cfg), "act": act(cfg.get("activation")), "bias": cfg.get("use_bias", True)}
    if cfg.get("depth_multiplier", 1) != 1:
        out["multiplier"] = cfg["depth_multiplier"]
    return {"dwconv": out}


def _sepconv(cfg: dict) -> dict:
    out = {
        **_window(cfg),
        "n_K": cfg["filters"],
        "act": act(cfg.get("activation")),
        "bias": cfg.get("use_bias", True),
    }
    if cfg.get("depth_multiplier", 1) != 1:
        out["multiplier"] = cfg["depth_multiplier"]
    return {"sepconv": out}


def _dense(cfg: dict) -> dict:
    return {
        "dense": {
            "units": cfg["units"],
            "act": act(cfg.get("activation")),
            "bias": cfg.get("use_bias", True),
        }
    }


def _axis(cfg: dict, default: Any = -1) -> Any:
    """The axis setting, a tuple (a config read in memory) as a list."""
    axis = cfg.get("axis", default)
    return list(axis) if isinstance(axis, tuple) else axis


def _bn(cfg: dict) -> dict:
    axis = _axis(cfg)
    if axis not in (-1, 3, [-1], [3]):
        raise Refused(f"batch norm over axis {axis}", "the channel axis (-1)")
    return {
        "bn": {
            "eps": cfg.get("epsilon", 1e-3),
            "momentum": cfg.get("momentum", 0.99),
            "center": cfg.get("center", True),
            "scale": cfg.get("scale", True),
        }
    }


#: A layer that computes its input unchanged (a linear Activation): left out of the spec.
IDENTITY = "identity"


def _activation(cfg: dict) -> dict:
    name = act(cfg["activation"])
    return {IDENTITY: {}} if name is None else {"act": name}


def _relu(cfg: dict) -> dict:
    if cfg.get("max_value") == 6.0 and not cfg.get("negative_slope") and not cfg.get("threshold"):
        return {"act": "relu6"} if "relu6" in ACTIVATIONS else _refuse_relu(cfg)
    if cfg.get("max_value") is None and not cfg.get("negative_slope") and not cfg.get("threshold"):
        return {"act": "relu"}
    return _refuse_relu(cfg)


def _refuse_relu(cfg: dict) -> dict:
    raise Refused(
        f"ReLU(max_value={cfg.get('max_value')}, negative_slope={cfg.get('negative_slope')})",
        "act: relu",
    )


def _pool(kind: str) -> Callable[[dict], dict]:
    return lambda cfg: {kind: _window(cfg, "pool_size")}


def _global(kind: str) -> Callable[[dict], dict]:
    def rule(cfg: dict) -> dict:
        _channels_last(cfg)
        return {kind: {"keepdims": True}} if cfg.get("keepdims") else {kind: {}}

    return rule


def _zeropad(cfg: dict) -> dict:
    pad = cfg["padding"]
    pairs = [list(p) if isinstance(p, (list, tuple)) else [p, p] for p in pad]
    return {"zeropad": {"p": pairs}}


def _rescale(cfg: dict) -> dict:
    """One number, or one per channel (EfficientNet's ImageNet stem: Rescaling([...]))."""
    return {"rescale": {"scale": _factor(cfg["scale"]), "offset": _factor(cfg.get("offset", 0.0))}}


def _factor(value: Any) -> float | list[float]:
    """A Rescaling factor as the spec writes it: a number or a flat list of numbers."""
    if isinstance(value, dict) and value.get("class_name") == "__tuple__":  # a saved tuple
        value = value.get("config", {}).get("value")
    if isinstance(value, (list, tuple)):
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
            return [float(x) for x in value]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise Refused(f"a rescaling factor {str(value)[:60]}", "rescale: a number or one per channel")


def _normalize(cfg: dict) -> dict:
    if cfg.get("invert"):
        raise Refused("an inverting Normalization layer", "normalize: {mean, variance}")
    if _axis(cfg, None) not in (-1, [-1], 3, [3], None):
        raise Refused(f"normalisation over axis {cfg['axis']}", "the channel axis (-1)")
    if cfg.get("mean") is None:
        # Adapted statistics live in the layer's weights (EfficientNet): init: loads them.
        return {"normalize": {}}
    # Given in the constructor: Keras keeps them as constants, not weights (EfficientNetV2).
    flat = lambda v: [float(x) for x in _flatten(v)]  # noqa: E731
    return {
        "normalize": {
            "mean": flat(cfg["mean"]),
            "variance": flat(cfg["variance"]),
            "constants": True,
        }
    }


def _dropout(cfg: dict) -> dict:
    out = {"rate": cfg["rate"]}
    if cfg.get("noise_shape") is not None:  # EfficientNet's drop-connect: (None, 1, 1, 1)
        out["noise_shape"] = list(cfg["noise_shape"])
    return {"dropout": out}


def _flatten(v: Any) -> list:
    return [y for x in v for y in _flatten(x)] if isinstance(v, list) else [v]


def _merge(kind: str) -> Callable[[dict], dict]:
    def rule(cfg: dict) -> dict:
        if kind == "concat" and cfg.get("axis", -1) not in (-1, 3):
            return {kind: {"axis": cfg["axis"]}}
        return {kind: {}}

    return rule


#: Keras class -> rule. Anything else is refused (see :func:`rule_for`).
RULES: dict[str, Callable[[dict], dict]] = {
    "Conv1D": _conv,
    "Conv2D": _conv,
    "Conv3D": _conv,
    "DepthwiseConv2D": _dwconv,
    "SeparableConv2D": _sepconv,
    "Dense": _dense,
    "BatchNormalization": _bn,
    "Activation": _activation,
    "ReLU": _relu,
    "MaxPooling2D": _pool("maxpool"),
    "AveragePooling2D": _pool("avgpool"),
    "GlobalAveragePooling2D": _global("gavgpool"),
    "GlobalMaxPooling2D": _global("gmaxpool"),
    "ZeroPadding2D": _zeropad,
    "Flatten": lambda cfg: {"flatten": {}},
    "Dropout": _dropout,
    "Rescaling": _rescale,
    "Normalization": _normalize,
    "Reshape": lambda cfg: {"reshape": {"shape": list(cfg["target_shape"])}},
    "LayerNormalization": lambda cfg: {"layernorm": {"eps": cfg.get("epsilon", 1e-3)}},
    "LayerScale": lambda cfg: {"layerscale": {"init": cfg.get("init_values", 1e-6)}},
    "Add": _merge("add"),
    "Multiply": _merge("multiply"),
    "Concatenate": _merge("concat"),
}

#: What to say for classes that have a near form.
NEAREST = {
    "Lambda": "a built-in layer (a Lambda's code is never imported)",
    "Conv2DTranspose": "convT: (padding rules differ: not imported yet)",
    "Sequential": "its layers written in the model itself",
    "StochasticDepth": "droppath:",
    "TFOpLambda": "a built-in layer",
}


def rule_for(cls: str) -> Callable[[dict], dict]:
    base = cls.rsplit(">", 1)[-1].rsplit(".", 1)[-1]
    rule = RULES.get(base)
    if rule is None:
        raise Refused(
            f"class {cls} has no equivalent",
            NEAREST.get(base, "one of " + ", ".join(sorted(RULES))),
        )
    return rule
