"""Safe YAML loading that remembers where every node came from.

- Only plain data (mappings, sequences, scalars): no Python objects, no tags that run code.
- Duplicate keys are an error (PyYAML silently keeps the last one).
- YAML 1.2 scalars: ``1e-3`` is a float (YAML 1.1 reads it as a string), ints are decimal
  (``0x3`` is a string, not hexadecimal 3) and only ``true``/``false`` are booleans (YAML 1.1 reads ``on``, ``off``, ``yes``, ``no`` as booleans,
  which would turn ``act: on`` or a class called ``no`` into ``True``/``False``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError

PathKey = tuple[Any, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema booleans, floats and ints."""


# Start from SafeLoader's resolvers but drop bool/float/int, then add YAML 1.2 versions.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float", "tag:yaml.org,2002:int")
    ]
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
    return int(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:int", _int)


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


def _convert(
    node: yaml.Node,
    path: PathKey,
    loader: _Loader,
    positions: dict[PathKey, tuple[int, int]],
    problems: list[Problem],
    file: str,
) -> Any:
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise yaml.constructor.ConstructorError(
            None, None, f"the tag {node.tag} is not allowed", node.start_mark
        )
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _convert(key_node, path + ("<key>",), loader, {}, problems, file)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                problems.append(
                    Problem(
                        Location(
                            file, key_node.start_mark.line + 1, key_node.start_mark.column + 1
                        ),
                        f"a mapping key must be a plain scalar, received {key!r}",
                    )
                )
                continue
            if key in out:
                first = positions.get(path + (key,), ("?", "?"))
                problems.append(
                    Problem(
                        Location(
                            file, key_node.start_mark.line + 1, key_node.start_mark.column + 1
                        ),
                        f"duplicate key '{key}', received it twice (first on line {first[0]})",
                        "remove one of them",
                    )
                )
                continue
            out[key] = _convert(value_node, path + (key,), loader, positions, problems, file)
            # A key's own position is more useful than its value's for "unknown key" errors.
            positions[path + (key,)] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _convert(child, path + (i,), loader, positions, problems, file)
            for i, child in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a :class:`Document`; raise :class:`SpecError` on any problem."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        raise SpecError(
            [Problem(loc, f"invalid YAML: {what}", "check indentation and quoting")]
        ) from None
    except yaml.YAMLError as exc:  # pragma: no cover - other scanner errors
        raise SpecError([Problem(Location(file), f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([Problem(Location(file, 1, 1), "the file is empty", "start with 'name:'")])
    positions: dict[PathKey, tuple[int, int]] = {}
    problems: list[Problem] = []
    try:
        data = _convert(node, (), loader, positions, problems, file)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise SpecError(
            [
                Problem(
                    loc,
                    f"unsupported YAML: {exc.problem}",
                    "only plain mappings, lists and scalars are allowed",
                )
            ]
        ) from None
    if problems:
        raise SpecError(problems)
    return Document(data, positions, file)


def load(path: str | Path) -> Document:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`SpecError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError.single(
            "file not found", location=Location(str(path)), hint="check the path"
        ) from None
    except IsADirectoryError:
        raise SpecError.single(
            "is a directory, not a YAML file", location=Location(str(path))
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError.single(
            f"cannot read the file: {exc}", location=Location(str(path))
        ) from None
    return loads(text, str(path))


def parse_scalar(text: str) -> Any:
    """Parse one scalar the way a YAML value would be (used for ``--set`` and the notation)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            return loader.construct_document(node)
        return loader.construct_object(node)
    except yaml.YAMLError:
        return text
    finally:
        loader.dispose()
