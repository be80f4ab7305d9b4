"""The raw text of a YAML file, checked before PyYAML sees it, and PyYAML's errors as one line.

- :func:`read_text`: a regular file of at most :data:`MAX_BYTES` bytes of UTF-8 (a FIFO,
  ``/dev/zero`` or a huge file is refused before anything is read);
- :func:`check_characters`: a character YAML forbids (NUL, ESC) is named and located;
- :func:`check_flow_depth`: ``[[[[...`` nested deeper than :data:`MAX_DEPTH` is refused before
  PyYAML's quadratic scan;
- :func:`yaml_error`: a PyYAML error as one located line (an unclosed bracket points where it
  opened).
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

#: The largest spec file read (bytes). Real specs are a few kilobytes.
MAX_BYTES = 256 * 1024
#: The deepest nesting of lists and mappings (a residual block inside a block is ~6 levels).
MAX_DEPTH = 100


def at(file: str, mark: Any) -> Location:
    """The location of a PyYAML mark (1-based line and column)."""
    return Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file)


#: Characters YAML does not allow in a stream (PyYAML's reader rule), e.g. NUL and ESC.
_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE


def line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


#: The names of the ASCII control characters (unicodedata has none for them).
# fmt: off
_C0 = [
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR",
    "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB",
    "ESC", "FS", "GS", "RS", "US",
]
# fmt: on


def check_characters(text: str, file: str) -> None:
    bad = _NON_PRINTABLE.search(text)
    if bad is None:
        return
    ch = bad.group()
    name = unicodedata.name(ch, "") or (
        _C0[ord(ch)] if ord(ch) < 32 else "DEL" if ch == "\x7f" else "a control character"
    )
    line, col = line_col(text, bad.start())
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


def check_flow_depth(text: str, file: str) -> list[int]:
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
                    line, col = line_col(text, m.start())
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


def yaml_error(exc: yaml.MarkedYAMLError, file: str, unclosed: list[int], text: str) -> SpecError:
    """A PyYAML error as one located line; an unclosed bracket or quote points where it opened."""
    context = exc.context or ""
    opened = exc.context_mark is not None and any(
        what in context for what in ("flow sequence", "flow mapping", "quoted scalar")
    )
    mark = exc.context_mark if opened else (exc.problem_mark or exc.context_mark)
    problem = exc.problem or ""
    if not opened and unclosed and exc.problem_mark is not None:
        # Gave up at the end with a bracket still open (libyaml: 'while parsing a flow node').
        line, col = line_col(text, unclosed[0])
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
    return SpecError([Problem(at(file, mark), f"invalid YAML: {what}", hint)])


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
