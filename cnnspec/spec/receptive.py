"""Receptive fields: how many input pixels each layer's output sees (pure Python, no TensorFlow).

Per spatial direction of the input, every node gets

* ``size``: the receptive field r (a unit of the input sees r input positions), and
* ``jump``: the distance in input positions between two neighbouring units (the product of
  the strides so far; below 1 after upsampling),

with the usual recurrence for a window of span ``d(K - 1) + 1`` and stride ``s``::

    r_out = r_in + (span - 1) * jump_in        jump_out = jump_in * s

Filters close to the input see fine details (small r), deep ones whole objects. Merges (add,
concat, multiply) take the largest field over their inputs, so every path of a DAG counts. A
layer that mixes all positions (global pooling, flatten, dense after flatten) sees the whole
extent its input covers. Padding never changes the field (it adds zeros, not pixels).
A backbone's internals are not described here: its field and those after it are unknown (None).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .. import shapes
from .backbone import BackboneSpec
from .graph import INPUT, Graph
from .layers import (
    ConvTransposeSpec,
    FlattenSpec,
    GlobalPoolSpec,
    LayerSpec,
    MergeSpec,
    PermuteSpec,
    PoolSpec,
    ReshapeSpec,
    ResizeSpec,
    UpsampleSpec,
    WindowSpec,
)


@dataclass(frozen=True)
class Field:
    """The receptive field of one node, per spatial direction of the model's input."""

    size: tuple[int, ...]
    jump: tuple[float, ...]
    #: the node still has spatial axes (False after global pooling / flatten: one field for all)
    spatial: bool = True

    def as_dict(self) -> dict:
        return {
            "size": list(self.size),
            "jump": [plain_number(j) for j in self.jump],
            "spatial": self.spatial,
        }


def plain_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 6)


# --- rules, one per family of layer classes (found through the class's MRO) ----------------------

Rule = Callable[[LayerSpec, list[Field], list[tuple[int, ...]]], Field | None]


def _window(spec: WindowSpec | PoolSpec, ins: list[Field], in_shapes) -> Field:
    f = ins[0]
    rank = len(in_shapes[0]) - 1
    K = shapes.expand(spec.K, rank, "K")
    s = shapes.expand(spec.strides if isinstance(spec, PoolSpec) else spec.s, rank, "s")
    d = shapes.expand(getattr(spec, "d", (1,)), rank, "d")
    size = tuple(r + (dd * (k - 1)) * j for r, k, dd, j in zip(f.size, K, d, f.jump, strict=True))
    return Field(
        tuple(math.ceil(x) for x in size), tuple(j * st for j, st in zip(f.jump, s, strict=True))
    )


def _transposed(spec: ConvTransposeSpec, ins: list[Field], in_shapes) -> Field:
    # Each output position is fed by ceil(span / s) input positions.
    f = ins[0]
    rank = len(in_shapes[0]) - 1
    K = shapes.expand(spec.K, rank, "K")
    s = shapes.expand(spec.s, rank, "s")
    d = shapes.expand(spec.d, rank, "d")
    size = tuple(
        math.ceil(r + (math.ceil((dd * (k - 1) + 1) / st) - 1) * j)
        for r, k, dd, st, j in zip(f.size, K, d, s, f.jump, strict=True)
    )
    return Field(size, tuple(j / st for j, st in zip(f.jump, s, strict=True)))


#: Input positions one output of an interpolation reads, per direction.
TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4}


def _interpolated(f: Field, factor: tuple[float, ...], interpolation: str) -> Field:
    grow = TAPS[interpolation] - 1
    size = tuple(math.ceil(r + grow * j) for r, j in zip(f.size, f.jump, strict=True))
    return Field(size, tuple(j / k for j, k in zip(f.jump, factor, strict=True)))


def _upsample(spec: UpsampleSpec, ins: list[Field], in_shapes) -> Field:
    factor = shapes.expand(spec.size, len(in_shapes[0]) - 1, "size")
    return _interpolated(ins[0], factor, spec.interpolation)


def _resize(spec: ResizeSpec, ins: list[Field], in_shapes) -> Field:
    size = shapes.expand(spec.size or (), 2, "size")
    factor = tuple(o / n for o, n in zip(size, in_shapes[0][:-1], strict=True))
    return _interpolated(ins[0], factor, spec.interpolation)


def _whole(spec: LayerSpec, ins: list[Field], in_shapes) -> Field:
    """Every output sees every input position: the extent the input's units cover."""
    f = ins[0]
    if not f.spatial:
        return f
    extent = in_shapes[0][:-1]
    size = tuple(math.ceil(r + (n - 1) * j) for r, n, j in zip(f.size, extent, f.jump, strict=True))
    return Field(size, f.jump, spatial=False)


def _permute(spec: PermuteSpec, ins: list[Field], in_shapes) -> Field:
    f = ins[0]
    rank = len(in_shapes[0])
    dims = list(spec.dims)
    if not f.spatial or dims[-1] != rank:  # the channel axis moved: positions are mixed
        return _whole(spec, ins, in_shapes)
    order = [d - 1 for d in dims[:-1]]
    return Field(tuple(f.size[i] for i in order), tuple(f.jump[i] for i in order))


def _merge(spec: LayerSpec, ins: list[Field], in_shapes) -> Field:
    # The largest field over every path; positions (and their jump) come from the spatial
    # inputs (a squeeze-and-excitation gate is global, the tensor it gates is not).
    positional = [f for f in ins if f.spatial] or ins
    size = tuple(max(sizes) for sizes in zip(*(f.size for f in ins), strict=True))
    jump = tuple(max(jumps) for jumps in zip(*(f.jump for f in positional), strict=True))
    return Field(size, jump, spatial=bool([f for f in ins if f.spatial]))


def _same(spec: LayerSpec, ins: list[Field], in_shapes) -> Field:
    return ins[0]


def _unknown(spec: LayerSpec, ins: list[Field], in_shapes) -> None:
    return None


#: Rules by layer class; a class without an entry uses its nearest base class's rule, and a
#: layer that keeps its positions (bn, act, dropout, zeropad, ...) passes the field on.
RULES: dict[type, Rule] = {
    WindowSpec: _window,
    PoolSpec: _window,
    ConvTransposeSpec: _transposed,
    UpsampleSpec: _upsample,
    ResizeSpec: _resize,
    GlobalPoolSpec: _whole,
    FlattenSpec: _whole,
    ReshapeSpec: _whole,
    PermuteSpec: _permute,
    MergeSpec: _merge,
    BackboneSpec: _unknown,
    LayerSpec: _same,
}


def _rule(spec: LayerSpec) -> Rule:
    return next(RULES[c] for c in type(spec).__mro__ if c in RULES)


def receptive_fields(graph: Graph) -> dict[str, Field | None]:
    """The receptive field of every node of ``graph`` (None where a backbone hides it)."""
    rank = max(len(graph.input_shape) - 1, 0)
    fields: dict[str, Field | None] = {INPUT: Field((1,) * rank, (1.0,) * rank, spatial=rank > 0)}
    for node in graph.nodes.values():
        if node.spec is None:
            continue
        ins = [fields[i] for i in node.inputs]
        if any(f is None for f in ins):
            fields[node.name] = None
            continue
        in_shapes = [graph.nodes[i].shape for i in node.inputs]
        spatial_in = all(f.spatial for f in ins)
        if not spatial_in and not isinstance(node.spec, MergeSpec):
            fields[node.name] = ins[0]  # past global pooling/flatten: the field stays whole
            continue
        fields[node.name] = _rule(node.spec)(node.spec, ins, in_shapes)
    return fields
