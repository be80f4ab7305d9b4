"""Safe YAML loading that remembers where every node came from.

- Only plain data (mappings, sequences, scalars): no Python objects, no tags that run code.
- Duplicate keys are an error (PyYAML silently keeps the last one).
- YAML 1.2 scalars: ``1e-3`` is a float (YAML 1.1 reads it as a string), ints are decimal
  (``0x3`` is a string, not hexadecimal 3), only ``true``/``false`` are booleans (YAML 1.1
  reads ``on``, ``off``, ``yes``, ``no`` as booleans, which would turn ``act: on`` or a class
  called ``no`` into ``True``/``False``) and there are no timestamps (``2024-01-01`` stays a
  string).
- Bounded (the raw text is checked first, in :mod:`cnnspec.yamltext`): a spec file is a
  regular file of at most :data:`MAX_BYTES`; it nests at most
  :data:`MAX_DEPTH` levels and holds at most :data:`MAX_NODES` values once its aliases
  (``*name``) are expanded, so an alias bomb or a recursive anchor costs milliseconds and gives
  a located error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError
from .yamltext import (
    MAX_BYTES,
    MAX_DEPTH,
    at,
    check_characters,
    check_flow_depth,
    read_text,
    yaml_error,
)

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Document",
    "load",
    "loads",
    "parse_scalar",
    "read_text",
]

PathKey = tuple[Any, ...]

#: The most values a document may hold, counting every use of an alias (``*name``) again.
MAX_NODES = 200_000


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and a bound on nesting depth."""

    file = "<string>"
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively: refuse deep nesting before Python's stack runs out.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError(
                    [
                        Problem(
                            at(self.file, mark),
                            f"the document nests deeper than {MAX_DEPTH} levels",
                            "flatten the structure; a spec needs a few levels",
                        )
                    ]
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# Start from SafeLoader's resolvers but drop bool/float/int/timestamp, then add YAML 1.2 ones.
_DROPPED = (
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:timestamp",
)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
# Decimal ints only: "0x3" must stay a string (a 0x3 kernel), not hexadecimal 3.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if len(text.lstrip("+-")) > 4000:  # Python refuses to read longer ints (int_max_str_digits)
        raise yaml.constructor.ConstructorError(
            None, None, f"a number of {len(text)} digits is too long", node.start_mark
        )
    return int(text)


_Loader.add_constructor("tag:yaml.org,2002:int", _int)
# An explicit !!timestamp tag: the text as written (no datetime objects in a spec).
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


if yaml.__with_libyaml__:

    class _CLoader(yaml.CSafeLoader):
        """The same rules on libyaml's parser: ten times faster on a large file."""

        file = "<string>"

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    _CLoader.yaml_constructors = _Loader.yaml_constructors
    _FastLoader: type = _CLoader
else:  # pragma: no cover - PyYAML without libyaml
    _FastLoader = _Loader


class Document:
    """A loaded YAML document: plain data plus the line/column of every node, by path."""

    def __init__(self, data: Any, positions: dict[PathKey, tuple[int, int]], file: str) -> None:
        self.data = data
        self.positions = positions
        self.file = file

    def location(self, path: PathKey) -> Location:
        """The location of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.positions:
                line, col = self.positions[path]
                return Location(self.file, line, col)
            path = path[:-1]
        line, col = self.positions.get((), (1, 1))
        return Location(self.file, line, col)


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
_MERGE = "tag:yaml.org,2002:merge"


class _Stop(Exception):
    """A problem that makes the rest of the document meaningless (bomb, cycle, too deep)."""


class _Converter:
    """Composed YAML nodes -> plain data, recording positions, bounded in size and depth."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.positions: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self.active: set[int] = set()  # ids of the collection nodes on the current path
        self.merged: dict[int, list[tuple[yaml.Node, yaml.Node]]] = {}

    def stop(self, node: yaml.Node, message: str, hint: str, path: PathKey = ()) -> None:
        """Record a problem that ends the conversion; ``path``'s top-level entry locates it."""
        if path and path[:1] in self.positions:
            line, col = self.positions[path[:1]]
            where = Location(self.file, line, col)
        else:
            where = at(self.file, node.start_mark)
        self.problems.append(Problem(where, message, hint))
        raise _Stop

    def convert(self, node: yaml.Node, path: PathKey, record: bool = True) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            self.stop(
                node,
                f"the document holds more than {MAX_NODES:,} values, counting every use of an alias",
                "an alias (*name) repeats its anchor's whole content at every use; use fewer",
                path,
            )
        if len(path) > MAX_DEPTH:
            self.stop(
                node,
                f"the document nests deeper than {MAX_DEPTH} levels",
                "flatten the structure (an alias, *name, nests its anchor's content again)",
                path,
            )
        if record:
            self.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if node.tag not in _PLAIN_TAGS:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the tag {node.tag} is not allowed", node.start_mark
                )
            if id(node) in self.active:
                self.stop(
                    node,
                    "an alias refers to the anchor that contains it (a recursive structure)",
                    "an alias (*name) can only repeat a node that is complete where it is used",
                )
            self.active.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self.mapping(node, path, record)
                return [self.convert(c, path + (i,), record) for i, c in enumerate(node.value)]
            finally:
                self.active.discard(id(node))
        return self.loader.construct_object(node, deep=True)

    def pairs(
        self, node: yaml.MappingNode, seen: frozenset[int]
    ) -> list[tuple[yaml.Node, yaml.Node]]:
        """The mapping's pairs with merge keys (``<<``) resolved, once per node.

        Its own keys win over merged ones, earlier merged mappings over later ones (YAML's merge
        rule); a key merged twice is kept once, so merges cannot multiply a document's size.
        """
        if id(node) in self.merged:
            return self.merged[id(node)]
        own: list[tuple[yaml.Node, yaml.Node]] = []
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE:
                own.append((key_node, value_node))
                continue
            sources = (
                value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            )
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    self.stop(
                        source,
                        "a merge key (<<) takes a mapping or a list of mappings",
                        "write '<<: *name' where &name marks a mapping",
                    )
                if id(source) in seen:
                    self.stop(
                        source,
                        "a merge key (<<) merges a mapping into itself (a recursive structure)",
                        "merge only other mappings",
                    )
                merged.extend(self.pairs(source, seen | {id(source)}))
        out, keys = [], set()
        for key_node, value_node in own + merged:
            ident = (
                (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            )
            if ident is not None and ident in keys and (key_node, value_node) not in own:
                continue  # overridden by an own key or an earlier merge
            if ident is not None:
                keys.add(ident)
            out.append((key_node, value_node))
        self.merged[id(node)] = out
        return out

    def mapping(self, node: yaml.MappingNode, path: PathKey, record: bool) -> dict:
        out: dict[Any, Any] = {}
        for key_node, value_node in self.pairs(node, frozenset({id(node)})):
            key = self.convert(key_node, path + ("<key>",), record=False)
            where = at(self.file, key_node.start_mark)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self.problems.append(
                    Problem(where, f"a mapping key must be a plain scalar, received {key!r}")
                )
                continue
            if key in out:
                first = self.positions.get(path + (key,), ("?", "?"))
                self.problems.append(
                    Problem(
                        where,
                        f"duplicate key '{key}', received it twice (first on line {first[0]})",
                        "remove one of them",
                    )
                )
                continue
            out[key] = self.convert(value_node, path + (key,), record)
            if record:
                # A key's own position is more useful than its value's for "unknown key" errors.
                self.positions[path + (key,)] = (where.line, where.col)
        return out


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a :class:`Document`; raise :class:`SpecError` on any problem."""
    text = text.removeprefix("\ufeff")
    check_characters(text, file)
    unclosed = check_flow_depth(text, file)
    loader = _FastLoader(text)
    loader.file = file
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise yaml_error(exc, file, unclosed, text) from None
    except yaml.YAMLError as exc:  # pragma: no cover - other reader/scanner errors
        raise SpecError([Problem(Location(file), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([Problem(Location(file, 1, 1), "the file is empty", "start with 'name:'")])
    converter = _Converter(loader, file)
    try:
        data = converter.convert(node, ())
    except _Stop:
        data = None
    except yaml.constructor.ConstructorError as exc:
        raise SpecError(
            [
                Problem(
                    at(file, exc.problem_mark),
                    f"unsupported YAML: {exc.problem}",
                    "only plain mappings, lists and scalars are allowed",
                )
            ]
        ) from None
    if converter.problems:
        raise SpecError(converter.problems)
    return Document(data, converter.positions, file)


def load(path: str | Path) -> Document:
    """Read and parse a YAML file; a missing, unreadable or unsafe file is a :class:`SpecError`."""
    return loads(read_text(path), str(path))


def parse_scalar(text: str) -> Any:
    """Parse one value the way a YAML value would be (used for ``--set`` and the notation).

    Text that is not valid YAML stays text. A value beyond the bounds of a document (size,
    nesting, values counting aliases) is a :class:`ValueError` saying which.
    """
    if len(text) > MAX_BYTES:
        raise ValueError(f"the value is {len(text):,} characters long, more than {MAX_BYTES:,}")
    try:
        check_flow_depth(text, "<value>")
    except SpecError:
        raise ValueError(f"the value nests deeper than {MAX_DEPTH} levels") from None
    loader = _FastLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_object(node)
        converter = _Converter(loader, "<value>")
        try:
            data = converter.convert(node, ())
        except _Stop:
            data = None
        if converter.problems:
            raise ValueError(converter.problems[0].message)
        return data
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()
