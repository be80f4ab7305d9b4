"""Expand a validated spec into a graph of primitive layers with every shape inferred.

Pure Python. Blocks are macros (:mod:`.graph_blocks`): each becomes primitive nodes named
``<block>_<part>``; the block's own name is an alias of its output node. Nodes are kept in a
topological order that matches ``keras.applications`` (a residual block's projection shortcut
comes before its body), so weights can be copied layer by layer. Layers on no path to an output
are left out with a warning: Keras would not build them, so they are not counted either.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import Location, Problem, SpecError, SpecWarning, did_you_mean
from ..shapes import ShapeError, check_size, fmt
from .blocks import BlockSpec
from .expand import MAX_DEPTH
from .graph_blocks import EXPANDERS, BlockExpansion
from .layers import LayerSpec, RescaleSpec
from .nodes import FAILED, INPUT, Failed, Graph, Node, Unchecked, notation, walk_items

if TYPE_CHECKING:
    from .model import ModelSpec

__all__ = ["FAILED", "INPUT", "Compiler", "Graph", "Node", "Unchecked", "compile_graph", "notation"]


class Compiler(BlockExpansion):
    """Expands a spec item by item into :class:`Graph` nodes, recording every problem."""

    def __init__(self, spec: ModelSpec, locate: Callable[[tuple], Location]) -> None:
        self.spec = spec
        self.locate = locate
        self.graph = Graph(tuple(spec.input))
        self.counters: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self.declared = {item.name for item in walk_items(spec.layers) if item.name}
        # Names written in the spec, with their prefixes: auto-names never take one.
        self.reserved: set[str] = set()
        self.head = ""
        self.block = ""
        self.params = 0  # of every node so far, for the model-size bound
        self.depth = 0  # blocks being expanded (the compiler recurses into them)
        self.origins: dict[str, LayerSpec] = {}  # node -> the item written for it (to locate)

    # --- bookkeeping ---------------------------------------------------------------------
    def fail(self, item: LayerSpec | None, message: str, hint: str = "") -> None:
        src, human = item.src if item is not None and item.src else ((), "")
        path = tuple(src) + ((item.kind_name,) if item is not None and src else ())
        self.problems.append(Problem(self.locate(path), message, hint, human))
        raise Failed

    def auto_name(self, prefix: str, kind: str) -> str:
        self.counters[prefix + kind] += 1
        name = f"{prefix}{kind}_{self.counters[prefix + kind]}"
        while name in self.graph.nodes or name in self.graph.aliases or name in self.reserved:
            self.counters[prefix + kind] += 1
            name = f"{prefix}{kind}_{self.counters[prefix + kind]}"
        return name

    def claim(self, item: LayerSpec, name: str) -> str:
        if name in self.graph.nodes or name in self.graph.aliases or name == INPUT:
            self.fail(item, f"the name '{name}' is used twice", "give every layer a unique name")
        return name

    def emit(
        self, spec: LayerSpec, name: str, inputs: list[str], owner: LayerSpec | None = None
    ) -> str:
        """Add one primitive node after checking its shape rule."""
        shapes = [self.graph.nodes[i].shape for i in inputs]
        try:
            out = spec.output_shape(shapes)
            if min(out) <= 0:
                raise ShapeError(
                    f"the output would be {fmt(out)} (empty) for a {fmt(shapes[0])} input",
                    "reduce K or s, or pad the input (p=same)",
                )
            params = spec.params(shapes)
            check_size(out, params, self.params + params)
        except ShapeError as exc:
            self.fail(owner or spec, exc.message, exc.hint)
        self.params += params
        self.origins[name] = owner if owner is not None and owner.src else spec
        self.graph.nodes[name] = Node(
            name,
            spec,
            inputs,
            out,
            params,
            spec.non_trainable(shapes),
            spec.macs(shapes, out),
            self.block,
            self.head,
        )
        return name

    # --- inputs ----------------------------------------------------------------------------
    def lookup(
        self,
        item: LayerSpec,
        ref: str | int,
        outputs: list[str],
        scopes: list[dict],
        field: str = "from",
    ) -> str:
        if isinstance(ref, int):
            if -ref > len(outputs):
                self.fail(
                    item,
                    f"from: {ref} reaches before the start of this layer list, received from={ref}",
                    f"use a value between -1 and -{len(outputs)}, or a layer name",
                )
            return outputs[ref]
        for scope in reversed(scopes):
            if ref in scope:
                return scope[ref]
        if ref == INPUT:
            return INPUT
        if ref in self.graph.nodes or ref in self.graph.aliases:
            return self.graph.resolve(ref)
        known = [n for s in scopes for n in s] + list(self.graph.nodes) + list(self.graph.aliases)
        if ref in self.declared:
            self.fail(
                item,
                f"{field}: '{ref}' refers to a layer defined later, received {field}={ref}",
                "layers can only read earlier layers (a later one would make a cycle)",
            )
        self.fail(
            item,
            f"unknown layer '{ref}' in {field}:, received {field}={ref}",
            did_you_mean(ref, known) or "name the layer with 'name:' first",
        )
        raise AssertionError  # unreachable

    def inputs_of(self, item: LayerSpec, outputs: list[str], scopes: list[dict]) -> list[str]:
        ref = item.from_
        if ref is None:
            refs: list[str | int] = [-1]
        elif isinstance(ref, tuple):
            refs = list(ref)
        else:
            refs = [ref]
        if item.is_merge and len(refs) < 2:
            self.fail(
                item,
                f"{item.kind_name} merges two or more inputs, received from={ref if ref is not None else '(previous layer only)'}",
                "give from: [a, b] with layer names or negative indices",
            )
        if not item.is_merge and len(refs) > 1:
            self.fail(
                item,
                f"{item.kind_name} takes one input, received from={list(ref)}",
                "merge them first with add, concat or multiply",
            )
        inputs = [self.lookup(item, r, outputs, scopes) for r in refs]
        if FAILED in inputs:
            raise Failed  # its input already failed with its own error
        return inputs

    def with_shapes(self, item: LayerSpec, scopes: list[dict]) -> LayerSpec:
        """``item`` with the shapes of the layers it names filled in (resize's like:)."""

        def shape_of(ref: str) -> tuple[int, ...]:
            node = self.lookup(item, ref, [], scopes, "like")
            if node == FAILED:
                raise Failed  # that layer has its own error
            return self.graph.nodes[node].shape

        try:
            return item.with_shapes(shape_of)
        except ShapeError as exc:
            self.fail(item, exc.message, exc.hint)
            raise AssertionError from None  # unreachable: fail raises

    # --- sequences and blocks ---------------------------------------------------------------
    def sequence(
        self, items: list[LayerSpec], start: str, prefix: str, scopes: list[dict], final: str = ""
    ) -> str:
        outputs = [start]
        self.reserved.update(prefix + item.name for item in items if item.name)
        scope: dict[str, str] = {}
        scopes = scopes + [scope]
        for i, item in enumerate(items):
            if isinstance(item, Unchecked):
                outputs.append(FAILED)
                if item.name:
                    scope[item.name] = self.graph.aliases[item.name] = FAILED
                continue
            try:
                inputs = self.inputs_of(item, outputs, scopes)
                name = final if (final and i == len(items) - 1 and not item.name) else ""
                out = self.layer(item, inputs, prefix, scopes, name)
            except Failed:
                out = FAILED
            outputs.append(out)
            if item.name:
                scope[item.name] = out
        return outputs[-1]

    def layer(
        self, item: LayerSpec, inputs: list[str], prefix: str, scopes: list[dict], name: str = ""
    ) -> str:
        expand = EXPANDERS.get(type(item))
        if name:
            name = self.claim(item, name)
        elif item.name:
            name = self.claim(item, prefix + item.name)
        else:
            kind = item.block if isinstance(item, BlockSpec) and item.block else item.kind_name
            name = self.auto_name(prefix, kind)
        if expand is None:
            return self.emit(self.with_shapes(item, scopes), name, inputs)
        if self.depth >= MAX_DEPTH:
            # The loader's expansion bounds nesting already; a spec built in Python may not.
            self.fail(item, f"blocks are nested more than {MAX_DEPTH} deep", "flatten the nesting")
        top = not self.block
        if top:
            self.block = name
        self.depth += 1
        try:
            out = expand(self, item, inputs[0], name, scopes)
        except Failed:
            out = FAILED
        finally:
            self.depth -= 1
            if top:
                self.block = ""
        self.graph.aliases[name] = out
        if out == FAILED:
            raise Failed
        return out

    # --- whole model -----------------------------------------------------------------------
    def run(self) -> Graph:
        g = self.graph
        g.nodes[INPUT] = Node(INPUT, None, [], tuple(self.spec.input))
        try:
            check_size(g.input_shape, 0, 0, "the input is")
        except ShapeError as exc:
            self.problems.append(Problem(self.locate(("input",)), exc.message, exc.hint, "input"))
            return g
        start = INPUT
        backbone = self.spec.backbone
        if backbone is not None:
            # The backbone brings its own preprocessing (keras.applications' preprocess_input).
            try:
                start = self.emit(backbone, "backbone", [INPUT])
            except Failed:
                return g
        elif self.spec.preprocess != "none":
            scale, offset = (1 / 255, 0.0) if self.spec.preprocess == "unit" else (1 / 127.5, -1.0)
            start = self.emit(RescaleSpec(scale=scale, offset=offset), "preprocess", [INPUT])
        g.output = self.sequence(self.spec.layers, start, "", [])
        for hname, head in self.spec.heads.items():
            self.head = hname
            try:
                if hname in g.nodes or hname in g.aliases:
                    self.problems.append(
                        Problem(
                            self.locate(("heads", hname)),
                            f"the head name '{hname}' is also a layer name",
                            "rename the head",
                            f"heads.{hname}",
                        )
                    )
                    continue
                if g.resolve(head.from_) == FAILED:
                    continue
                src = (
                    g.resolve(head.from_)
                    if (head.from_ in g.nodes or head.from_ in g.aliases)
                    else None
                )
                if src is None:
                    self.problems.append(
                        Problem(
                            self.locate(("heads", hname, "from")),
                            f"unknown layer '{head.from_}' in from:, received from={head.from_}",
                            did_you_mean(head.from_, list(g.nodes) + list(g.aliases))
                            or "name the layer first",
                            f"heads.{hname}",
                        )
                    )
                    continue
                out = self.sequence(head.layers, src, f"{hname}_", [], final=hname)
                if out != FAILED:
                    g.heads[hname] = g.resolve(out)
            except Failed:
                continue
        return g

    # --- layers no output reads ---------------------------------------------------------------
    def prune(self) -> list[Problem]:
        """Leave out the nodes on no path to an output; one warning per item written.

        A node that only an auxiliary head reads becomes part of that head (training only).
        """
        g = self.graph
        if g.output not in g.nodes:  # a spec compiled for its other problems (see Unchecked)
            return []
        serves: dict[str, str] = {INPUT: ""}  # node -> the output it is kept for ('' = main)
        for head, out in [("", g.output), *g.heads.items()]:
            todo = [out]
            while todo:
                name = todo.pop()
                if name not in serves:
                    serves[name] = head
                    todo.extend(g.nodes[name].inputs)
        for name, node in g.nodes.items():
            if name in serves and not node.head:
                node.head = serves[name]
        dead = [n for n in g.nodes.values() if n.name not in serves]
        if not dead:
            return []
        g.nodes = {n: node for n, node in g.nodes.items() if n in serves}
        g.aliases = {a: n for a, n in g.aliases.items() if n in serves}
        g.unused = [n.name for n in dead]
        groups: dict[str, list[Node]] = {}  # a top-level block, or a layer, left out as a whole
        for node in dead:
            groups.setdefault(node.block or node.name, []).append(node)
        return [self.unused_problem(name, nodes) for name, nodes in groups.items()]

    def unused_problem(self, name: str, nodes: list[Node]) -> Problem:
        item = next((self.origins[n.name] for n in nodes if self.origins[n.name].src), None)
        src, human = item.src if item is not None else ((), "")
        path = tuple(src) + ((item.kind_name,) if item is not None and src else ())
        params = sum(n.params for n in nodes)
        what = f"{len(nodes)} layers, " if len(nodes) > 1 else ""
        return Problem(
            self.locate(path),
            f"warning: '{name}' ({what}{params:,} params) is on no path to the output: it is "
            "not built and not counted",
            f"read it in a later layer (from: {name}) or delete it",
            human,
        )


def compile_graph(spec: ModelSpec, locate: Callable[[tuple], Location] | None = None) -> Graph:
    """Expand ``spec`` into a :class:`Graph`; raise :class:`SpecError` with every shape problem.

    Layers no output reads are left out, each with one located :class:`SpecWarning`.
    """
    if locate is None:

        def locate(path: tuple) -> Location:
            return Location(spec.file)

    compiler = Compiler(spec, locate)
    graph = compiler.run()
    if compiler.problems:
        raise SpecError(compiler.problems)
    for problem in compiler.prune():
        warnings.warn(str(problem), SpecWarning, stacklevel=2)
    return graph
