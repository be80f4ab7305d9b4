"""The exactness check of an import, before the spec file is written (pure Python, no TensorFlow).

An imported spec must hold exactly the source's weights: the same total number of parameters,
and for every weight-bearing source layer a spec layer of the same name whose weights have the
same shapes (so ``init:`` loads all of them by name). Anything else is refused in one line that
names the first layer that differs: an import is exact or it is not written.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from pathlib import Path
from typing import Any

from ..errors import RunError

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class SourceWeights:
    """One weight-bearing layer of the source model, in the source's order."""

    name: str
    cls: str
    shapes: Shapes

    @property
    def params(self) -> int:
        return sum(prod(s) for s in self.shapes)


def _fmt(shapes: Shapes) -> str:
    return "[" + ", ".join("x".join(map(str, s)) or "()" for s in shapes) + "]"


def first_difference(spec: Any, weights: list[SourceWeights]) -> str | None:
    """What differs first between the spec's weights and the source's, or None when equal."""
    from ..init.targets import spec_targets

    targets, uncovered = spec_targets(spec)
    if uncovered:
        return f"spec layer '{uncovered[0]}' has parameters no source weight can fill"
    by_name = {t.name: t for t in targets}
    for w in weights:
        target = by_name.pop(w.name, None)
        if target is None:
            return f"layer '{w.name}' ({w.cls}): its weights {_fmt(w.shapes)} have no spec layer"
        if target.shapes != w.shapes:
            return (
                f"layer '{w.name}' ({w.cls}): weights {_fmt(w.shapes)} in the source, "
                f"{_fmt(target.shapes)} in the spec"
            )
    if by_name:
        extra = next(iter(by_name.values()))
        return (
            f"spec layer '{extra.name}' ({extra.kind}) has {extra.params:,} parameters "
            "the source does not have"
        )
    total, source_total = spec.graph.total_params, sum(w.params for w in weights)
    if total != source_total:
        return f"the spec has {total:,} parameters, the source {source_total:,}"
    return None


def check_exact(spec: Any, weights: list[SourceWeights], source: str) -> None:
    """RunError (one line) unless ``spec`` holds exactly the source's weights."""
    problem = first_difference(spec, weights)
    if problem is not None:
        raise RunError(
            f"import: {source} cannot be imported exactly: {problem}",
            hint="nothing was written; an imported spec is exact or refused",
        )


def graph_form(spec: Any) -> list[tuple]:
    """The spec's graph without names: each node's class, settings and inputs (as positions),
    in the canonical order. Two specs with equal forms build the same model."""
    from ..init.source import topological
    from ..spec.graph import INPUT

    graph = spec.graph
    parents = {n.name: list(n.inputs) for n in graph.nodes.values() if n.spec is not None}
    order = topological(parents, [graph.output])
    nodes = sorted(parents, key=lambda name: order[name])
    position = {name: i for i, name in enumerate(nodes)} | {INPUT: -1}
    out = []
    for name in nodes:
        spec = graph.nodes[name].spec
        inputs = [position.get(i, i) for i in parents[name]]
        if type(spec).__name__ in _COMMUTATIVE and len(inputs) == 2:
            inputs.sort()  # x + y is y + x, bit for bit
        out.append(
            (type(spec).__name__, repr(_settings(spec)), tuple(inputs), graph.nodes[name].shape)
        )
    return out


_COMMUTATIVE = ("AddSpec", "MultiplySpec")


def _settings(spec: Any) -> dict:
    out = spec.model_dump(exclude={"name", "from_", "src"})
    if out.get("p") == "valid":  # no padding, however written
        out["p"] = (0,)
    return out


def same_pairs(spec: Any, plain: Any, weights: list[SourceWeights], source: str) -> bool:
    """Whether ``spec`` is ``plain``'s graph (an exact import, layers named as the source's)
    and init: would load every source layer into the layer that ``plain`` loads it into."""
    from ..init.match import LOADED, match
    from ..init.source import GRAPH, KERAS, KERAS_PREFIX, SourceLayer, WeightIndex, kind_of
    from ..init.targets import spec_targets

    if spec.graph.total_params != plain.graph.total_params:
        return False
    if graph_form(spec) != graph_form(plain):
        return False
    order = KERAS if source.startswith(KERAS_PREFIX) else GRAPH
    targets, uncovered = spec_targets(spec, order)
    expected, _ = spec_targets(plain, order)
    if uncovered or len(targets) != len(expected):
        return False
    layers = [SourceLayer(w.name, w.cls, kind_of(w.cls) or w.cls, w.shapes, ()) for w in weights]
    index = WeightIndex(source, Path(source), None, layers, order=order)
    table = match(targets, index, spec.init, spec.graph.total_params)
    want = {t.name: e.name for t, e in zip(targets, expected, strict=True)}
    return all(r.status == LOADED and r.source == want[r.layer] for r in table.rows)
