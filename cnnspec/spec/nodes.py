"""The expanded network: :class:`Graph` of primitive :class:`Node` s, and what compiling shares.

Pure Python. :mod:`.graph` builds a Graph from a spec; :mod:`.graph_blocks` expands blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..shapes import Shape
from .layers import ActivationSpec, DenseSpec, DropoutSpec, LayerSpec

INPUT = "input"


@dataclass
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
    #: Layers on no path to an output: left out of the graph (Keras would not build them).
    unused: list[str] = field(default_factory=list)

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


def walk_items(items: list[Any]) -> Iterator[LayerSpec]:
    """Every item of a layer list, depth first, including those inside blocks."""
    for item in items:
        yield item
        for key in ("body", "shortcut"):
            sub = getattr(item, key, None)
            if isinstance(sub, list):
                yield from walk_items(sub)
        for branch in getattr(item, "branches", None) or []:
            yield from walk_items(branch)


def items_of_kind(items: list[LayerSpec], cls: type) -> list[LayerSpec]:
    """The items of ``items`` (blocks' included) that are instances of ``cls``."""
    return [item for item in walk_items(items) if isinstance(item, cls)]


class Failed(Exception):
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
