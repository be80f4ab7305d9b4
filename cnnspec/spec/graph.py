"""Expand a validated spec into a graph of primitive layers with every shape inferred.

Pure Python. Blocks are macros: each becomes primitive nodes named ``<block>_<part>``; the
block's own name is an alias of its output node. Nodes are kept in a topological order that
matches ``keras.applications`` (a residual block's projection shortcut comes before its body),
so weights can be copied layer by layer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Location, Problem, SpecError, did_you_mean
from ..shapes import Shape, ShapeError, check_size, fmt
from .blocks import BlockSpec, InceptionSpec, ParallelSpec, ResidualSpec
from .expand import MAX_DEPTH
from .layers import (
    ActivationSpec,
    AddSpec,
    BatchNormSpec,
    ConcatSpec,
    ConvSpec,
    ConvTransposeSpec,
    DenseSpec,
    DepthwiseConvSpec,
    DropoutSpec,
    DropPathSpec,
    LayerSpec,
    MaxPoolSpec,
    MultiplySpec,
    RescaleSpec,
    SeparableConvSpec,
)

if TYPE_CHECKING:
    from .model import ModelSpec

INPUT = "input"
_CONVS = (ConvSpec, SeparableConvSpec, DepthwiseConvSpec, ConvTransposeSpec)


@dataclass
class Node:
    """One primitive layer: its spec, input node names and inferred numbers."""

    name: str
    spec: LayerSpec | None  # None for the model input
    inputs: list[str]
    shape: Shape
    params: int = 0
    non_trainable: int = 0
    macs: int = 0
    block: str = ""  # the top-level block it belongs to ('' for plain layers)
    head: str = ""  # the auxiliary head it belongs to ('' for the main graph)

    @property
    def kind(self) -> str:
        return "input" if self.spec is None else self.spec.kind_name


def notation(graph: Graph, node: Node) -> str:
    """A node's compact notation, with K shown per direction (3 -> 3x3 on images)."""
    if node.spec is None:
        return ""
    return node.spec.notation(len(graph.nodes[node.inputs[0]].shape) - 1)


@dataclass
class Graph:
    """The expanded network: nodes in topological order, the main output and head outputs."""

    input_shape: Shape
    nodes: dict[str, Node] = field(default_factory=dict)
    output: str = ""
    heads: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def resolve(self, name: str) -> str:
        return self.aliases.get(name, name)

    def main_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.head]

    @property
    def total_params(self) -> int:
        return sum(n.params for n in self.main_nodes())

    @property
    def trainable_params(self) -> int:
        return sum(n.params - n.non_trainable for n in self.main_nodes())

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.main_nodes())

    def num_classes(self, name: str) -> int | None:
        """Units of the dense layer that produces ``name`` (through activations/dropout)."""
        node = self.nodes[self.resolve(name)]
        while isinstance(node.spec, (ActivationSpec, DropoutSpec)):
            node = self.nodes[node.inputs[0]]
        if isinstance(node.spec, DenseSpec) and len(node.shape) == 1:
            return node.spec.units
        return None


def _items(items: list[Any]) -> Iterator[LayerSpec]:
    """Every item of a layer list, depth first, including those inside blocks."""
    for item in items:
        yield item
        for key in ("body", "shortcut"):
            sub = getattr(item, key, None)
            if isinstance(sub, list):
                yield from _items(sub)
        for branch in getattr(item, "branches", None) or []:
            yield from _items(branch)


def _contains(items: list[LayerSpec], cls: type) -> list[LayerSpec]:
    return [item for item in _items(items) if isinstance(item, cls)]


class _Failed(Exception):
    """A problem was recorded; stop expanding this item."""


#: The output of an item that failed: items reading it are skipped without a second error, so
#: one validation reports the independent problems of a spec, not only the first.
FAILED = "\0failed"


@dataclass
class Unchecked:
    """A layer item that did not validate, in a spec compiled for its other problems.

    It compiles as failed: the layers that read it are skipped, the others are still checked,
    so one run reports the shape errors of the layers that are independent of a schema error.
    """

    name: str | None = None
    src: Any = None
    from_: Any = None


class _Compiler:
    def __init__(self, spec: ModelSpec, locate: Callable[[tuple], Location]) -> None:
        self.spec = spec
        self.locate = locate
        self.graph = Graph(tuple(spec.input))
        self.counters: Counter[str] = Counter()
        self.problems: list[Problem] = []
        self.declared = {item.name for item in _items(spec.layers) if item.name}
        # Names written in the spec, with their prefixes: auto-names never take one.
        self.reserved: set[str] = set()
        self.head = ""
        self.block = ""
        self.params = 0  # of every node so far, for the model-size bound
        self.depth = 0  # blocks being expanded (the compiler recurses into them)

    # --- bookkeeping ---------------------------------------------------------------------
    def fail(self, item: LayerSpec | None, message: str, hint: str = "") -> None:
        src, human = item.src if item is not None and item.src else ((), "")
        path = tuple(src) + ((item.kind_name,) if item is not None and src else ())
        self.problems.append(Problem(self.locate(path), message, hint, human))
        raise _Failed

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
        self, item: LayerSpec, ref: str | int, outputs: list[str], scopes: list[dict]
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
                f"from: '{ref}' refers to a layer defined later, received from={ref}",
                "layers can only read earlier layers (a later one would make a cycle)",
            )
        self.fail(
            item,
            f"unknown layer '{ref}' in from:, received from={ref}",
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
            raise _Failed  # its input already failed with its own error
        return inputs

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
            except _Failed:
                out = FAILED
            outputs.append(out)
            if item.name:
                scope[item.name] = out
        return outputs[-1]

    def layer(
        self, item: LayerSpec, inputs: list[str], prefix: str, scopes: list[dict], name: str = ""
    ) -> str:
        expand = _BLOCKS.get(type(item))
        if name:
            name = self.claim(item, name)
        elif item.name:
            name = self.claim(item, prefix + item.name)
        else:
            kind = item.block if isinstance(item, BlockSpec) and item.block else item.kind_name
            name = self.auto_name(prefix, kind)
        if expand is None:
            return self.emit(item, name, inputs)
        if self.depth >= MAX_DEPTH:
            # The loader's expansion bounds nesting already; a spec built in Python may not.
            self.fail(item, f"blocks are nested more than {MAX_DEPTH} deep", "flatten the nesting")
        top = not self.block
        if top:
            self.block = name
        self.depth += 1
        try:
            out = expand(self, item, inputs[0], name, scopes)
        except _Failed:
            out = FAILED
        finally:
            self.depth -= 1
            if top:
                self.block = ""
        self.graph.aliases[name] = out
        if out == FAILED:
            raise _Failed
        return out

    def residual(self, item: ResidualSpec, x: str, name: str, scopes: list[dict]) -> str:
        mark = len(self.graph.nodes)
        body = self.sequence(item.body, x, f"{name}_", scopes)
        if body == FAILED:
            raise _Failed
        if item.drop_path:
            body = self.emit(DropPathSpec(rate=item.drop_path), f"{name}_droppath", [body], item)
        body_nodes = list(self.graph.nodes.items())[mark:]
        x_shape, y_shape = self.graph.nodes[x].shape, self.graph.nodes[body].shape
        short = item.shortcut
        if isinstance(short, list):
            shortcut = self.sequence(short, x, f"{name}_shortcut_", scopes)
            if shortcut == FAILED:
                raise _Failed
        elif short == "identity" or (short == "auto" and x_shape == y_shape):
            if x_shape != y_shape:
                self.fail(
                    item,
                    f"an identity shortcut needs the body to keep the shape {fmt(x_shape)}, received {fmt(y_shape)}",
                    "use shortcut: auto or projection",
                )
            shortcut = x
        else:
            shortcut = self.projection(item, x, name, x_shape, y_shape)
        # Move the shortcut's nodes before the body's (keras.applications' order).
        if body_nodes and shortcut != x:
            nodes = list(self.graph.nodes.items())
            moved = nodes[mark + len(body_nodes) :]
            self.graph.nodes = dict(nodes[:mark] + moved + body_nodes)
        out = self.emit(AddSpec(), f"{name}_add", [shortcut, body], item)
        if item.act:
            out = self.emit(ActivationSpec(fn=item.act), f"{name}_out", [out], item)
        return out

    def projection(
        self, item: ResidualSpec, x: str, name: str, x_shape: Shape, y_shape: Shape
    ) -> str:
        if len(x_shape) < 2 or len(x_shape) != len(y_shape):
            self.fail(
                item,
                f"cannot project a {fmt(x_shape)} shortcut onto a {fmt(y_shape)} body output",
                "give shortcut: a list of layers",
            )
        strides = tuple(math.ceil(a / b) for a, b in zip(x_shape[:-1], y_shape[:-1], strict=True))
        # The bias follows the body's last convolution of any kind (a sepconv/dwconv body too).
        convs = _contains(item.body, _CONVS)
        bias = (
            item.shortcut_bias
            if item.shortcut_bias is not None
            else (convs[-1].bias if convs else True)
        )
        norms = _contains(item.body, BatchNormSpec)
        use_bn = item.shortcut_bn if item.shortcut_bn is not None else bool(norms)
        conv = ConvSpec(K=(1,), n_K=y_shape[-1], s=strides, bias=bias)
        out = self.emit(conv, f"{name}_shortcut", [x], item)
        if self.graph.nodes[out].shape != y_shape:
            self.fail(
                item,
                f"a 1x1 projection cannot map the {fmt(x_shape)} input onto the body's {fmt(y_shape)}",
                "make the body's output size a whole fraction of its input (use p=same)",
            )
        if use_bn:
            bn = (
                norms[-1].model_copy(update={"name": None, "src": None})
                if norms
                else BatchNormSpec()
            )
            out = self.emit(bn, f"{name}_shortcut_bn", [out], item)
        return out

    def inception(self, item: InceptionSpec, x: str, name: str, scopes: list[dict]) -> str:
        def conv(k: int, n: int, src: str, part: str) -> str:
            out = self.emit(
                ConvSpec(
                    K=(k,), n_K=n, p="same", act=None if item.bn else item.act, bias=not item.bn
                ),
                f"{name}_{part}",
                [src],
                item,
            )
            if item.bn:
                out = self.emit(BatchNormSpec(), f"{name}_{part}_bn", [out], item)
                if item.act:
                    out = self.emit(ActivationSpec(fn=item.act), f"{name}_{part}_act", [out], item)
            return out

        branches = []
        if item.n1x1:
            branches.append(conv(1, item.n1x1, x, "1x1"))
        r3 = conv(1, item.n3x3red, x, "3x3_reduce") if item.n3x3red else x
        branches.append(conv(3, item.n3x3, r3, "3x3"))
        r5 = conv(1, item.n5x5red, x, "5x5_reduce") if item.n5x5red else x
        branches.append(conv(5, item.n5x5, r5, "5x5"))
        pool = self.emit(MaxPoolSpec(K=(3,), s=(1,), p="same"), f"{name}_pool", [x], item)
        branches.append(conv(1, item.pool_proj, pool, "pool_proj") if item.pool_proj else pool)
        return self.emit(ConcatSpec(), f"{name}_concat", branches, item)

    def parallel(self, item: ParallelSpec, x: str, name: str, scopes: list[dict]) -> str:
        outs = [
            self.sequence(branch, x, f"{name}_b{j + 1}_", scopes) if branch else x
            for j, branch in enumerate(item.branches)
        ]
        if FAILED in outs:
            raise _Failed
        merge = {"add": AddSpec, "concat": ConcatSpec, "multiply": MultiplySpec}[item.merge]()
        out = self.emit(merge, f"{name}_{item.merge}", outs, item)
        if item.act:
            out = self.emit(ActivationSpec(fn=item.act), f"{name}_out", [out], item)
        return out

    def block_seq(self, item: BlockSpec, x: str, name: str, scopes: list[dict]) -> str:
        body = item.body
        if len(body) == 1 and body[0].name is None and body[0].from_ is None:
            # A one-item block is that item under the block's name: bottleneck_3_conv_1,
            # not bottleneck_3_residual_1_conv_1.
            only = body[0]
            expand = _BLOCKS.get(type(only))
            if expand is None:
                return self.emit(only, f"{name}_{only.kind_name}", [x])
            return expand(self, only, x, name, scopes)
        return self.sequence(body, x, f"{name}_", scopes)

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
            except _Failed:
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
            except _Failed:
                continue
        return g


_BLOCKS: dict[type, Callable[..., str]] = {
    ResidualSpec: _Compiler.residual,
    InceptionSpec: _Compiler.inception,
    ParallelSpec: _Compiler.parallel,
    BlockSpec: _Compiler.block_seq,
}


def compile_graph(spec: ModelSpec, locate: Callable[[tuple], Location] | None = None) -> Graph:
    """Expand ``spec`` into a :class:`Graph`; raise :class:`SpecError` with every shape problem."""
    if locate is None:

        def locate(path: tuple) -> Location:
            return Location(spec.file)

    compiler = _Compiler(spec, locate)
    graph = compiler.run()
    if compiler.problems:
        raise SpecError(compiler.problems)
    return graph
