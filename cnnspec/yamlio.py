"""Safe YAML loading that remembers where every node came from.

- Only plain data (mappings, sequences, scalars): no Python objects, no tags that run code.
- Duplicate keys are an error (PyYAML silently keeps the last one).
- YAML 1.2 scalars: ``1e-3`` is a float (YAML 1.1 reads it as a string), ints are decimal
  (``0x3`` is a string, not hexadecimal 3), only ``true``/``false`` are booleans (YAML 1.1
  reads ``on``, ``off``, ``yes``, ``no`` as booleans, which would turn ``act: on`` or a class
  called ``no`` into ``True``/``False``) and there are no timestamps (``2024-01-01`` stays a
  string).
- Bounded: a spec file is a regular file of at most :data:`MAX_BYTES`; it nests at most
  :data:`MAX_DEPTH` levels and holds at most :data:`MAX_NODES` values once its aliases
  (``*name``) are expanded, so an alias bomb or a recursive anchor costs milliseconds and gives
  a located error.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError

PathKey = tuple[Any, ...]

#: The largest spec file read (bytes). Real specs are a few kilobytes.
MAX_BYTES = 256 * 1024
#: The deepest nesting of lists and mappings (a residual block inside a block is ~6 levels).
MAX_DEPTH = 100
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
                            _at(self.file, mark),
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


def _at(file: str, mark: Any) -> Location:
    return Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file)


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
            where = _at(self.file, node.start_mark)
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
            where = _at(self.file, key_node.start_mark)
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


#: Characters YAML does not allow in a stream (PyYAML's reader rule), e.g. NUL and ESC.
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


#: The names of the ASCII control characters (unicodedata has none for them).
_C0 = [
    "NUL",
    "SOH",
    "STX",
    "ETX",
    "EOT",
    "ENQ",
    "ACK",
    "BEL",
    "BS",
    "HT",
    "LF",
    "VT",
    "FF",
    "CR",
    "SO",
    "SI",
    "DLE",
    "DC1",
    "DC2",
    "DC3",
    "DC4",
    "NAK",
    "SYN",
    "ETB",
    "CAN",
    "EM",
    "SUB",
    "ESC",
    "FS",
    "GS",
    "RS",
    "US",
]


def _check_characters(text: str, file: str) -> None:
    bad = _NON_PRINTABLE.search(text)
    if bad is None:
        return
    ch = bad.group()
    name = unicodedata.name(ch, "") or (
        _C0[ord(ch)] if ord(ch) < 32 else "DEL" if ch == "\x7f" else "a control character"
    )
    line, col = _line_col(text, bad.start())
    raise SpecError(
        [
            Problem(
                Location(file, line, col),
                f"the character U+{ord(ch):04X} ({name}) is not allowed in YAML, received {ch!r}",
                "remove it (inside double quotes a string may spell it as an escape, e.g. \\x1b)",
            )
        ]
    )


_FLOW_TOKEN = re.compile(r"""[\[\]{}\n"'#]""")


def _check_flow_depth(text: str, file: str) -> list[int]:
    """Refuse ``[[[[...`` nested deeper than :data:`MAX_DEPTH` before PyYAML scans it.

    PyYAML's scanner looks ahead over every open flow collection (quadratic in their number),
    so this cheap pass runs first. It counts a bracket at the top level only where YAML starts
    a flow collection (after ``key:``, ``-``, ``?`` or at a line start) and skips quoted text
    and comments: it may count too few, never too many. Returns where the brackets still open
    at the end of the text start (an unclosed ``[`` is reported there).
    """
    opened: list[int] = []
    i, line_start = 0, 0
    while True:
        m = _FLOW_TOKEN.search(text, i)
        if m is None:
            return opened
        ch, i = m.group(), m.end()
        if ch == "\n":
            line_start = i
        elif ch == "#" and (m.start() == line_start or text[m.start() - 1] in " \t"):
            i = text.find("\n", i)
            if i < 0:
                return opened
        elif ch in "'\"":
            if opened or _after(text, m.start(), line_start) in ":-?":
                end = _quoted_end(text, i, ch)
                if end < 0:
                    return opened
                i = end
        elif ch in "[{":
            if opened or _after(text, m.start(), line_start) in ":-?":
                opened.append(m.start())
                if len(opened) > MAX_DEPTH:
                    line, col = _line_col(text, m.start())
                    raise SpecError(
                        [
                            Problem(
                                Location(file, line, col),
                                f"the document nests deeper than {MAX_DEPTH} levels",
                                "flatten the structure; a spec needs a few levels",
                            )
                        ]
                    )
        elif opened:  # ] or }
            opened.pop()


def _after(text: str, pos: int, line_start: int) -> str:
    """The last character before ``pos`` on its line that is not a blank ('' for none)."""
    j = pos - 1
    while j >= line_start and text[j] in " \t":
        j -= 1
    return text[j] if j >= line_start else ""


def _quoted_end(text: str, i: int, quote: str) -> int:
    """The index after the quoted scalar that starts before ``i`` (-1 when it does not end)."""
    while True:
        j = text.find(quote, i)
        if j < 0:
            return -1
        if quote == "'" and text.startswith("''", j):
            i = j + 2  # '' is an escaped quote
        elif quote == '"' and (j - len(text[:j].rstrip("\\"))) % 2:
            i = j + 1  # an escaped \"
        else:
            return j + 1


def _yaml_error(exc: yaml.MarkedYAMLError, file: str, unclosed: list[int], text: str) -> SpecError:
    """A PyYAML error as one located line; an unclosed bracket or quote points where it opened."""
    context = exc.context or ""
    opened = exc.context_mark is not None and any(
        what in context for what in ("flow sequence", "flow mapping", "quoted scalar")
    )
    mark = exc.context_mark if opened else (exc.problem_mark or exc.context_mark)
    problem = exc.problem or ""
    if not opened and unclosed and exc.problem_mark is not None:
        # Gave up at the end with a bracket still open (libyaml: 'while parsing a flow node').
        line, col = _line_col(text, unclosed[0])
        gave_up = exc.problem_mark
        return SpecError(
            [
                Problem(
                    Location(file, line, col),
                    f"invalid YAML: the '{text[unclosed[0]]}' that opens here is not closed: "
                    f"{problem} on line {gave_up.line + 1}, column {gave_up.column + 1}",
                    "close every '[' with ']', '{' with '}' and every quote",
                )
            ]
        )
    if opened and exc.problem_mark is not None:
        gave_up = exc.problem_mark
        what = (
            f"{context.removeprefix('while ')} that starts here is not closed: "
            f"{problem} on line {gave_up.line + 1}, column {gave_up.column + 1}"
        )
        hint = "close every '[' with ']', '{' with '}' and every quote"
    else:
        what = " ".join(x for x in (context, problem) if x)
        hint = "check indentation and quoting"
    return SpecError([Problem(_at(file, mark), f"invalid YAML: {what}", hint)])


def loads(text: str, file: str = "<string>") -> Document:
    """Parse YAML text into a :class:`Document`; raise :class:`SpecError` on any problem."""
    text = text.removeprefix("\ufeff")
    _check_characters(text, file)
    unclosed = _check_flow_depth(text, file)
    loader = _FastLoader(text)
    loader.file = file
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file, unclosed, text) from None
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
                    _at(file, exc.problem_mark),
                    f"unsupported YAML: {exc.problem}",
                    "only plain mappings, lists and scalars are allowed",
                )
            ]
        ) from None
    if converter.problems:
        raise SpecError(converter.problems)
    return Document(data, converter.positions, file)


def read_text(path: str | Path, what: str = "spec") -> str:
    """The UTF-8 text of a regular file of at most :data:`MAX_BYTES`; else a :class:`SpecError`.

    The file is opened without blocking and checked before anything is read, so a FIFO, a device
    (``/dev/zero``) or a huge file is refused at once instead of hanging or filling memory.
    """
    where = Location(str(path))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise SpecError.single("file not found", location=where, hint="check the path") from None
    except IsADirectoryError:
        raise SpecError.single(f"is a directory, not a {what} file", location=where) from None
    except OSError as exc:
        raise SpecError.single(
            f"cannot open the file: {exc.strerror or exc}", location=where
        ) from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise SpecError.single(f"is a directory, not a {what} file", location=where)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(info.st_mode):
            raise SpecError.single(
                f"is not a regular file (a pipe, device or socket), received {path}",
                location=where,
                hint=f"save the {what} to a file and give its path",
            )
        if info.st_size > MAX_BYTES:
            raise SpecError.single(
                f"the file is {info.st_size:,} bytes, more than the {MAX_BYTES:,} a {what} may have",
                location=where,
                hint="a spec is a few kilobytes; use define: and times: to repeat layers",
            )
        try:
            raw = f.read(MAX_BYTES + 1)  # the file may have grown since fstat
        except OSError as exc:
            raise SpecError.single(
                f"cannot read the file: {exc.strerror or exc}", location=where
            ) from None
    if len(raw) > MAX_BYTES:
        raise SpecError.single(
            f"the file is more than the {MAX_BYTES:,} bytes a {what} may have", location=where
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        start = raw.rfind(b"\n", 0, exc.start) + 1
        col = len(raw[start : exc.start].decode("utf-8", errors="replace")) + 1
        raise SpecError(
            [
                Problem(
                    Location(str(path), line, col),
                    f"the file is not UTF-8 text, received the byte {raw[exc.start]:#04x}",
                    "save the file as UTF-8",
                )
            ]
        ) from None


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
        _check_flow_depth(text, "<value>")
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
