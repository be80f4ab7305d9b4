"""One builder per primitive layer kind (dispatched on the spec class, no if-chains).

Each builder turns a spec into the Keras layers that compute it, named after the node:
``conv_3`` (and ``conv_3_pad`` when the spec pads explicitly with zeros, the lecture's p).
"""

from __future__ import annotations

import functools
from functools import singledispatch
from typing import Any

import keras

from .. import shapes
from ..spec import layers as L
from ..spec.types import parse_activation
from .custom import (
    DropPath,
    GlobalL2Pooling,
    L2Pooling,
    LayerScale,
    LocalResponseNormalization,
    Normalization,
)

Tensor = Any

_ACT = {"swish": "silu", "hard_swish": "hard_silu"}


def activation(name: str | None) -> str | None:
    """The Keras name of an activation to pass to a layer (``None`` for none, and for one with
    a parameter: :func:`activate` adds it as its own layer, which reloads in safe mode)."""
    if name is None or parse_activation(name)[1] is not None:
        return None
    return _ACT.get(name, name)


#: Activations with a parameter -> their Keras layer (see cnnspec.spec.types.PARAMETRISED).
_PARAMETRISED = {"leaky_relu": lambda x, **kw: keras.layers.LeakyReLU(negative_slope=x, **kw)}


def activation_layer(name: str, layer_name: str, **kw: Any) -> keras.layers.Layer:
    """The Keras layer that applies activation ``name`` (``relu``, ``leaky_relu(0.1)``)."""
    base, number = parse_activation(name)
    if number is None:
        return keras.layers.Activation(activation(name), name=layer_name, **kw)
    return _PARAMETRISED[base](number, name=layer_name, **kw)


def activate(y: Tensor, name: str | None, node: str, **kw: Any) -> Tensor:
    """Apply a parametrised activation after a layer as ``<node>_act`` (others are built in)."""
    if name is None or parse_activation(name)[1] is None:
        return y
    return activation_layer(name, f"{node}_act", **kw)(y)


def _nd(prefix: str, rank: int, suffix: str = "") -> type:
    """``Conv`` + 2 -> keras.layers.Conv2D."""
    cls = getattr(keras.layers, f"{prefix}{rank}D{suffix}", None)
    if cls is None:
        raise ValueError(f"Keras has no {prefix}{rank}D{suffix}")
    return cls


def _padding(x: Tensor, p: Any, rank: int, name: str) -> tuple[Tensor, str]:
    """Explicit zero padding as its own layer, or the Keras padding string."""
    if isinstance(p, str):
        return x, p
    pads = shapes.pads_for(p, rank)
    if not any(a or b for a, b in pads):
        return x, "valid"
    pad = pads[0] if rank == 1 else pads
    return _nd("ZeroPadding", rank)(pad, name=f"{name}_pad")(x), "valid"


def _rank(shape: shapes.Shape) -> int:
    return len(shape) - 1


@singledispatch
def apply(spec: L.LayerSpec, name: str, inputs: list[Tensor], in_shapes: list, **kw: Any) -> Tensor:
    """Build the Keras layers of ``spec`` on ``inputs``; returns the output tensor."""
    raise NotImplementedError(f"no builder for layer kind '{spec.kind_name}'")


def _conv(prefix: str, spec, name: str, inputs, in_shapes, *args, options=None, **kw) -> Tensor:
    """The conv family (Conv, DepthwiseConv, SeparableConv): K, s, p, d, act, bias.

    ``options``: the Keras layer's own arguments; ``kw`` goes to every layer built (dtype)."""
    rank = _rank(in_shapes[0])
    x, padding = _padding(inputs[0], spec.p, rank, name)
    y = _nd(prefix, rank)(
        *args,
        shapes.expand(spec.K, rank, "K"),
        strides=shapes.expand(spec.s, rank, "s"),
        padding=padding,
        dilation_rate=shapes.expand(spec.d, rank, "d"),
        activation=activation(spec.act),
        use_bias=spec.bias,
        name=name,
        **(options or {}),
        **kw,
    )(x)
    return activate(y, spec.act, name, **kw)


@apply.register
def _(spec: L.ConvSpec, name, inputs, in_shapes, **kw):
    return _conv(
        "Conv", spec, name, inputs, in_shapes, spec.n_K, options={"groups": spec.groups}, **kw
    )


@apply.register
def _(spec: L.DepthwiseConvSpec, name, inputs, in_shapes, **kw):
    return _conv(
        "DepthwiseConv",
        spec,
        name,
        inputs,
        in_shapes,
        options={"depth_multiplier": spec.multiplier},
        **kw,
    )


@apply.register
def _(spec: L.SeparableConvSpec, name, inputs, in_shapes, **kw):
    return _conv(
        "SeparableConv",
        spec,
        name,
        inputs,
        in_shapes,
        spec.n_K,
        options={"depth_multiplier": spec.multiplier},
        **kw,
    )


@apply.register
def _(spec: L.ConvTransposeSpec, name, inputs, in_shapes, **kw):
    # Keras pads only 'same'/'valid'; explicit p crops the 'valid' output (PyTorch's rule), in
    # a Cropping layer after it. The weights stay under the node's name.
    rank = _rank(in_shapes[0])
    op = spec.output_padding(rank)
    K, s, d = (shapes.expand(getattr(spec, f), rank, f) for f in ("K", "s", "d"))
    conv = functools.partial(
        _nd("Conv", rank, "Transpose"),
        spec.n_K,
        K,
        strides=s,
        dilation_rate=d,
        use_bias=spec.bias,
        name=name,
        **kw,
    )
    spans = [di * (k - 1) + 1 for k, di in zip(K, d, strict=True)]
    # The full 'valid' output ends at (n - 1)s + span; each padding crops it (start, end). Rows
    # past its end (output padding, or 'valid'/'same' with a kernel narrower than the stride)
    # only the bias reaches; tf2onnx turns them into negative ONNX pads, which no runtime loads.
    # So they are never asked of Keras: the input gets one more (zero) position instead, s more
    # rows, and the end crop keeps the few wanted. Same values, ONNX-exportable.
    explicit = not isinstance(spec.p, str)
    if spec.p == "same":
        n = in_shapes[0][:-1]
        outs = spec.output_shape(in_shapes)[:-1]
        over = [(ni - 1) * si + span - L for ni, si, span, L in zip(n, s, spans, outs, strict=True)]
        if min(over) >= 0:  # Keras' own 'same' (its crop is (over // 2, the rest), as TF's)
            act = activation(spec.act)
            y = conv(padding="same", output_padding=op, activation=act)(inputs[0])
            return activate(y, spec.act, name, **kw)
        crops = [(t // 2, t - t // 2) if t >= 0 else (0, t) for t in over]
    else:
        pads = shapes.pads_for(spec.p, rank) if explicit else ((0, 0),) * rank
        if op is None:
            op = tuple(max(span, si) - span for span, si in zip(spans, s, strict=True))
        crops = [(a, b - o) for (a, b), o in zip(pads, op, strict=True)]
    grow = tuple(int(b < 0) for _, b in crops)
    crop = tuple((a, b + g * si) for (a, b), g, si in zip(crops, grow, s, strict=True))
    x = inputs[0]
    if any(grow):
        pad = tuple((0, g) for g in grow)
        x = _nd("ZeroPadding", rank)(pad[0] if rank == 1 else pad, name=f"{name}_pad", **kw)(x)
    y = conv(
        padding="valid",
        output_padding=(0,) * rank,
        activation=None if explicit else activation(spec.act),
    )(x)
    if any(a or b for a, b in crop):
        y = _nd("Cropping", rank)(crop[0] if rank == 1 else crop, name=f"{name}_crop", **kw)(y)
    if explicit and spec.act:
        return activation_layer(spec.act, f"{name}_act", **kw)(y)
    return activate(y, spec.act, name, **kw)


def _pool(prefix: str):
    def build(spec: L.PoolSpec, name, inputs, in_shapes, **kw):
        rank = _rank(in_shapes[0])
        x, padding = _padding(inputs[0], spec.p, rank, name)
        return _nd(prefix, rank)(
            shapes.expand(spec.K, rank, "K"),
            strides=shapes.expand(spec.strides, rank, "s"),
            padding=padding,
            name=name,
            **kw,
        )(x)

    return build


apply.register(L.MaxPoolSpec, _pool("MaxPooling"))
apply.register(L.AvgPoolSpec, _pool("AveragePooling"))


@apply.register
def _(spec: L.L2PoolSpec, name, inputs, in_shapes, **kw):
    rank = _rank(in_shapes[0])
    x, padding = _padding(inputs[0], spec.p, rank, name)
    return L2Pooling(
        shapes.expand(spec.K, rank, "K"),
        shapes.expand(spec.strides, rank, "s"),
        padding=padding,
        rank=rank,
        name=name,
        **kw,
    )(x)


def _global(prefix: str):
    def build(spec: L.GlobalPoolSpec, name, inputs, in_shapes, **kw):
        return _nd(prefix, _rank(in_shapes[0]))(keepdims=spec.keepdims, name=name, **kw)(inputs[0])

    return build


apply.register(L.GlobalMaxPoolSpec, _global("GlobalMaxPooling"))
apply.register(L.GlobalAvgPoolSpec, _global("GlobalAveragePooling"))


@apply.register
def _(spec: L.GlobalL2PoolSpec, name, inputs, in_shapes, **kw):
    return GlobalL2Pooling(keepdims=spec.keepdims, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.DenseSpec, name, inputs, in_shapes, **kw):
    y = keras.layers.Dense(
        spec.units, activation=activation(spec.act), use_bias=spec.bias, name=name, **kw
    )(inputs[0])
    return activate(y, spec.act, name, **kw)


@apply.register
def _(spec: L.FlattenSpec, name, inputs, in_shapes, **kw):
    return keras.layers.Flatten(name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.DropoutSpec, name, inputs, in_shapes, **kw):
    noise = tuple(spec.noise_shape) if spec.noise_shape else None
    return keras.layers.Dropout(spec.rate, noise_shape=noise, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.DropPathSpec, name, inputs, in_shapes, **kw):
    return DropPath(spec.rate, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.LayerScaleSpec, name, inputs, in_shapes, **kw):
    return LayerScale(spec.init, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.BatchNormSpec, name, inputs, in_shapes, **kw):
    return keras.layers.BatchNormalization(
        epsilon=spec.eps,
        momentum=spec.momentum,
        center=spec.center,
        scale=spec.scale,
        name=name,
        **kw,
    )(inputs[0])


@apply.register
def _(spec: L.LayerNormSpec, name, inputs, in_shapes, **kw):
    return keras.layers.LayerNormalization(epsilon=spec.eps, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.LRNSpec, name, inputs, in_shapes, **kw):
    return LocalResponseNormalization(spec.size, spec.alpha, spec.beta, spec.k, name=name, **kw)(
        inputs[0]
    )


@apply.register
def _(spec: L.ActivationSpec, name, inputs, in_shapes, **kw):
    return activation_layer(spec.fn, name, **kw)(inputs[0])


@apply.register
def _(spec: L.ZeroPadSpec, name, inputs, in_shapes, **kw):
    rank = _rank(in_shapes[0])
    pads = shapes.pads_for(spec.p, rank)
    return _nd("ZeroPadding", rank)(pads[0] if rank == 1 else pads, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.CropSpec, name, inputs, in_shapes, **kw):
    rank = _rank(in_shapes[0])
    pads = shapes.pads_for(spec.p, rank)
    return _nd("Cropping", rank)(pads[0] if rank == 1 else pads, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.UpsampleSpec, name, inputs, in_shapes, **kw):
    rank = _rank(in_shapes[0])
    size = shapes.expand(spec.size, rank, "size")
    if rank == 2:  # only UpSampling2D interpolates (the spec refuses it on other ranks)
        kw["interpolation"] = spec.interpolation
    return _nd("UpSampling", rank)(size[0] if rank == 1 else size, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.ResizeSpec, name, inputs, in_shapes, **kw):
    height, width = shapes.expand(spec.size, 2, "size")  # like: was resolved to size
    return keras.layers.Resizing(height, width, interpolation=spec.interpolation, name=name, **kw)(
        inputs[0]
    )


@apply.register
def _(spec: L.RescaleSpec, name, inputs, in_shapes, **kw):
    # Lists are per channel: Keras' Rescaling broadcasts them on the last axis.
    return keras.layers.Rescaling(spec.scale, spec.offset, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.NormalizeSpec, name, inputs, in_shapes, **kw):
    # Statistics as weights (not constructor constants), as keras.applications' EfficientNet
    # has them: the parameter count matches and a weight copy carries them. cnnspec's subclass
    # of keras.layers.Normalization computes the same; its graph exports to ONNX.
    mean, variance = spec.per_channel(in_shapes[0][-1])
    if spec.constants:
        return Normalization(axis=-1, mean=mean, variance=variance, name=name, **kw)(inputs[0])
    layer = Normalization(axis=-1, name=name, **kw)
    layer.build((None, *in_shapes[0]))
    layer.adapt_mean.assign(mean)
    layer.adapt_variance.assign(variance)
    layer.finalize_state()
    return layer(inputs[0])


@apply.register
def _(spec: L.ReshapeSpec, name, inputs, in_shapes, **kw):
    return keras.layers.Reshape(spec.shape, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.PermuteSpec, name, inputs, in_shapes, **kw):
    return keras.layers.Permute(spec.dims, name=name, **kw)(inputs[0])


@apply.register
def _(spec: L.ShuffleSpec, name, inputs, in_shapes, **kw):
    # ShuffleNet's reshape-transpose-reshape from built-in layers (reloads in safe mode).
    *spatial, c = in_shapes[0]
    g, rank = spec.groups, len(spatial)
    x = keras.layers.Reshape((*spatial, g, c // g), name=f"{name}_split")(inputs[0])
    swap = (*range(1, rank + 1), rank + 2, rank + 1)
    x = keras.layers.Permute(swap, name=f"{name}_swap")(x)
    return keras.layers.Reshape(tuple(in_shapes[0]), name=name, **kw)(x)


@apply.register
def _(spec: L.AddSpec, name, inputs, in_shapes, **kw):
    return keras.layers.Add(name=name, **kw)(inputs)


@apply.register
def _(spec: L.MultiplySpec, name, inputs, in_shapes, **kw):
    return keras.layers.Multiply(name=name, **kw)(inputs)


@apply.register
def _(spec: L.ConcatSpec, name, inputs, in_shapes, **kw):
    return keras.layers.Concatenate(axis=spec.axis, name=name, **kw)(inputs)
