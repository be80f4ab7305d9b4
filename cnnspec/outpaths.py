"""Output paths: checked before any work, written atomically, OSErrors reported as one line.

Every command that writes something calls :func:`check_output` on each destination *up front*,
before it loads a model or data or trains, so that an unwritable destination costs milliseconds
instead of a finished run: the destination must not be a folder where a file is wanted (or a file
where a folder is wanted), no parent may be a file, and the nearest existing folder must accept a
new file (probed by creating and removing a hidden temporary file, which also catches read-only
file systems and virtual ones such as ``/proc``, even for root).

:func:`atomic_path` gives a hidden temporary name beside the destination and renames it into place
when the block succeeds (a reader never sees half a file; a failure leaves nothing), turning any
OSError into a :class:`~cnnspec.errors.RunError` that names the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from .errors import RunError

Kind = Literal["file", "dir", "tree"]


#: Paths longer than this are shortened in messages (a 4 KB path is still one line).
SHOWN_CHARS = 120


def shown(path: str | Path) -> str:
    """``path`` for a message: in full, or its start and end around an ellipsis if very long."""
    text = str(path)
    if len(text) <= SHOWN_CHARS:
        return text
    half = SHOWN_CHARS // 2
    return f"{text[:half]}...{text[-half:]} ({len(text.encode(errors='replace'))} bytes)"


def reason(exc: OSError) -> str:
    """The reason an OSError gives, in words a user can act on."""
    if exc.errno == errno.ENOENT:
        return "the folder does not accept new files (a virtual file system such as /proc?)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the device"
    if exc.errno == errno.EFBIG:
        return "the file grew past the size this process may write (ulimit -f)"
    if exc.errno == errno.ENAMETOOLONG:
        longest = max((len(os.fsencode(p)) for p in Path(exc.filename or "").parts), default=0)
        if longest > _name_max() or not exc.filename:
            return f"the name is too long (a file name holds at most {_name_max()} bytes)"
        return "the path is too long for the system (4096 bytes at most on Linux)"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return exc.strerror or type(exc).__name__


def _name_max() -> int:
    try:
        return os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def check_output(path: str | Path, option: str = "-o", kind: Kind = "file") -> Path:
    """Refuse a destination that cannot be written, naming the path and the reason (exit 1).

    ``kind``: ``file`` (a file is written or replaced there), ``dir`` (a folder is created
    there, or files are written into it) or ``tree`` (a folder written beside it replaces it,
    as an export does: its parent must take new entries). Creates nothing that stays.
    """
    path = Path(path)
    try:
        return _check_output(path, option, kind)
    except OSError as exc:  # a name too long, a loop of links, ... when merely looked at
        raise RunError(f"{option} {shown(path)}: {reason(exc)}") from None


def _check_output(path: Path, option: str, kind: Kind) -> Path:
    where = f"{option} {shown(path)}"
    if path.is_dir() and kind == "file":
        raise RunError(
            f"{where}: is a folder; a file is written there",
            hint=f"give a file name, e.g. {path / 'name'}",
        )
    if path.exists() and not path.is_dir() and kind != "file":
        raise RunError(f"{where}: is a file; a folder is written there", hint="choose another path")
    folder = path if kind == "dir" and path.is_dir() else path.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link: mkdir would fail on it
            raise RunError(f"{where}: {existing} is a broken symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise RunError(
            f"{where}: {existing} is a file, so nothing can be written under it",
            hint="choose a path whose parent folders are folders",
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".cnnspec-probe-")
    except OSError as exc:
        raise RunError(f"{where}: cannot write in {shown(existing)}: {reason(exc)}") from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path, *, keep_suffix: bool = True) -> Iterator[Path]:
    """A hidden temporary path beside ``path``, renamed onto ``path`` when the block succeeds.

    The temporary name keeps ``path``'s suffix (writers such as Keras insist on it). On any
    failure the temporary file is removed and ``path`` is untouched; an OSError becomes a
    RunError naming ``path``. Replaces a file, never a folder.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise RunError(f"{path}: is a folder; a file is written there", hint="give a file name")
    suffix = path.suffix if keep_suffix else ""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise RunError(f"cannot write {shown(path)}: {reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def ctrl_c_is_never_lost() -> Iterator[Callable[[], None]]:
    """Ctrl-C raises KeyboardInterrupt as usual and is also remembered; yields ``check()``.

    TensorFlow's C++ code (writing a SavedModel, for one) can swallow the KeyboardInterrupt
    raised inside it, or turn it into another error: CI saw an export interrupted mid-write
    finish and exit 0. Call ``check()`` before committing the result: it raises
    KeyboardInterrupt if Ctrl-C came; any other error leaving the block after a Ctrl-C becomes
    KeyboardInterrupt too. Nothing changes outside the main thread (no handler can be set) or
    where SIGINT has no Python handler (ignored, as under ``nohup cmd &``: it stays ignored).
    """
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield lambda: None
        return
    pressed: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        pressed.append(True)
        previous(signum, frame)  # Python's default handler raises KeyboardInterrupt

    def check() -> None:
        if pressed:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    try:
        yield check
    except BaseException:
        if pressed:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
