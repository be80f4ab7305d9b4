"""The weight-bearing layers of a spec, with the tensor shapes Keras will give them (pure Python).

One rule per spec class (a registry, not a chain of ifs), in the order Keras creates the
variables; the spec's own ``params()`` is the check (tests/test_init.py compares both with Keras).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from .. import shapes as S
from ..spec import layers as L
from ..spec.graph import INPUT
from .source import KERAS, keras_order, topological

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TargetLayer:
    """One weight-bearing node of the spec's graph."""

    name: str
    kind: str
    shapes: tuple[Shape, ...]
    first: bool  # reads the model's input (directly or through weightless layers)

    @property
    def params(self) -> int:
        return sum(prod(s) for s in self.shapes)


def _k(spec, shape: Shape) -> tuple[int, ...]:
    return tuple(S.expand(spec.K, len(shape) - 1, "K"))


def _conv(spec: L.ConvSpec, x: Shape) -> list[Shape]:
    out = [(*_k(spec, x), x[-1] // spec.groups, spec.n_K)]
    return out + ([(spec.n_K,)] if spec.bias else [])


def _dwconv(spec: L.DepthwiseConvSpec, x: Shape) -> list[Shape]:
    out = [(*_k(spec, x), x[-1], spec.multiplier)]
    return out + ([(x[-1] * spec.multiplier,)] if spec.bias else [])


def _sepconv(spec: L.SeparableConvSpec, x: Shape) -> list[Shape]:
    mid = x[-1] * spec.multiplier
    ones = (1,) * (len(x) - 1)
    out = [(*_k(spec, x), x[-1], spec.multiplier), (*ones, mid, spec.n_K)]
    return out + ([(spec.n_K,)] if spec.bias else [])


def _convT(spec: L.ConvTransposeSpec, x: Shape) -> list[Shape]:
    out = [(*_k(spec, x), spec.n_K, x[-1])]
    return out + ([(spec.n_K,)] if spec.bias else [])


def _dense(spec: L.DenseSpec, x: Shape) -> list[Shape]:
    return [(x[-1], spec.units)] + ([(spec.units,)] if spec.bias else [])


def _bn(spec: L.BatchNormSpec, x: Shape) -> list[Shape]:
    c = (x[-1],)
    return [c] * (int(spec.scale) + int(spec.center) + 2)


def _layernorm(spec: L.LayerNormSpec, x: Shape) -> list[Shape]:
    return [(x[-1],), (x[-1],)]


def _layerscale(spec: L.LayerScaleSpec, x: Shape) -> list[Shape]:
    return [(x[-1],)]


def _normalize(spec: L.NormalizeSpec, x: Shape) -> list[Shape]:
    if spec.constants:
        return []
    return [(x[-1],), (x[-1],), ()]


#: spec class -> (kind shared with the source's Keras class, weight shapes for an input shape)
WEIGHT_SHAPES: dict[type, tuple[str, Callable[..., list[Shape]]]] = {
    L.ConvSpec: ("conv", _conv),
    L.DepthwiseConvSpec: ("dwconv", _dwconv),
    L.SeparableConvSpec: ("sepconv", _sepconv),
    L.ConvTransposeSpec: ("convT", _convT),
    L.DenseSpec: ("dense", _dense),
    L.BatchNormSpec: ("bn", _bn),
    L.LayerNormSpec: ("layernorm", _layernorm),
    L.LayerScaleSpec: ("layerscale", _layerscale),
    L.NormalizeSpec: ("normalize", _normalize),
}


def spec_targets(spec, order: str = "graph") -> tuple[list[TargetLayer], list[str]]:
    """The spec's weight-bearing layers in the source's ``order`` (its graph order, or Keras'
    layer order for a legacy HDF5 source), and the names of nodes with parameters that no
    rule covers (a backbone:, a custom kind): they stay as built."""
    graph = spec.graph
    targets: list[TargetLayer] = []
    uncovered: list[str] = []
    reaches_input = {INPUT}
    for node in graph.nodes.values():
        if node.spec is None:
            continue
        rule = WEIGHT_SHAPES.get(type(node.spec))
        if rule is None:
            if node.params:
                uncovered.append(node.name)
            elif any(i in reaches_input for i in node.inputs):
                reaches_input.add(node.name)  # weightless: the first conv may still follow
            continue
        kind, weights = rule
        x = graph.nodes[node.inputs[0]].shape if node.inputs[0] != INPUT else graph.input_shape
        shapes = tuple(tuple(s) for s in weights(node.spec, tuple(x)))
        first = any(i in reaches_input for i in node.inputs)
        if shapes:
            targets.append(TargetLayer(node.name, kind, shapes, first))
    parents = {n.name: list(n.inputs) for n in graph.nodes.values() if n.spec is not None}
    rank = keras_order if order == KERAS else topological
    position = rank(parents, [graph.output])
    targets.sort(key=lambda t: position.get(t.name, len(position)))
    return targets, uncovered
