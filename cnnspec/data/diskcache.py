"""The disk cache's folders: filled atomically, checksummed, verified when opened, held open.

A cache entry is a folder ``<root>/<key>/`` holding tf.data's cache files (``data.index``,
``data.data-*``) and ``info.json``, which records what the entry holds (source, split, input
size, image count) and the size and CRC-32 of every file. Opening an entry checks them all
(about 1.4 GB/s on one core), so a truncated, bit-flipped, missing or swapped shard is found
before training and the entry is rebuilt with one warning line. An opened entry is read
through file handles held by this process: deleting the cache mid-run is safe.

A fill writes into ``<root>/.<key>.tmp-<host>-<pid>-<ns>/`` and renames it into place; a
temporary folder whose process is dead (same host) or that is a week old is swept.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from ..errors import RunError

INFO = "info.json"
PREFIX = "data"  # tf.data's cache files are data.index and data.data-*
_TMP = re.compile(r"^\.[0-9a-f]+\.tmp-(?:(?P<host>.+)-)?(?P<pid>\d+)-(?P<ns>\d+)$")
STALE_SECONDS = 7 * 24 * 3600  # another host's fill (a shared cache folder): a week
_CHUNK = 8 * 1024**2
_held: list[int] = []  # file descriptors of opened entries, for the life of the process
# entry folder -> (prefix through the held descriptors, identities of its files): a process
# that loads the same data again (search trials) reuses them instead of opening more
_opened: dict[str, tuple[str, dict]] = {}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:64] or "host"


def temporary_name(key: str) -> str:
    return f".{key}.tmp-{_host()}-{os.getpid()}-{time.time_ns()}"


def sweep(root: Path) -> list[Path]:
    """Remove the temporary folders of fills that can no longer finish; return them."""
    removed: list[Path] = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    host, now = _host(), time.time_ns()
    for name in names:
        match = _TMP.match(name)
        if match is None:
            continue
        age = (now - int(match["ns"])) / 1e9
        dead = match["host"] == host and not _alive(int(match["pid"]))
        if dead or age > STALE_SECONDS:
            shutil.rmtree(root / name, ignore_errors=True)
            removed.append(root / name)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _crc(fd: int) -> int:
    crc, offset = 0, 0
    while chunk := os.pread(fd, _CHUNK, offset):
        crc = zlib.crc32(chunk, crc)
        offset += len(chunk)
    return crc


def seal(folder: Path, info: dict) -> None:
    """Write ``info.json`` with the size and CRC-32 of every cache file of ``folder``."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(PREFIX + "."):
            fd = os.open(path, os.O_RDONLY)
            try:
                files[path.name] = [os.fstat(fd).st_size, _crc(fd)]
            finally:
                os.close(fd)
    (folder / INFO).write_text(json.dumps({**info, "files": files}, indent=1))


def open_entry(folder: Path, info: dict) -> tuple[str | None, str]:
    """(prefix to give ``Dataset.cache``, "") for a sound entry, else (None, what is wrong).

    The entry's files are opened once and checked against ``info.json`` (sizes, CRC-32, and
    the split, image count and input size it must hold); the returned prefix reads them
    through those open handles where the system allows it (Linux), so deleting the folder
    later changes nothing for this run.
    """
    held = _opened.get(str(folder))
    if held is not None and held[1] == _identity(folder, held[1]):
        return held[0], ""  # opened and checked earlier in this process, unchanged since
    try:
        recorded = json.loads((folder / INFO).read_text())
        files = recorded["files"]
        assert isinstance(files, dict) and files
    except FileNotFoundError:
        return None, f"{INFO} is missing"
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return None, f"{INFO} is unreadable"
    for field in ("split", "images", "input", "source"):
        if recorded.get(field) != info.get(field):
            return None, f"it holds {field} {recorded.get(field)!r}, not {info.get(field)!r}"
    present = {p.name for p in _listdir(folder) if p.name.startswith(PREFIX + ".")}
    if present != set(files) or f"{PREFIX}.index" not in present:
        return None, f"its files are {sorted(present)}, not {sorted(files)}"
    fds: dict[str, int] = {}
    sound = False
    try:
        for name, (size, crc) in sorted(files.items()):
            fd = fds[name] = os.open(folder / name, os.O_RDONLY)
            if os.fstat(fd).st_size != size:
                return None, f"{name} has {os.fstat(fd).st_size} bytes, not {size}"
            if _crc(fd) != crc:
                return None, f"{name} fails its checksum"
        sound = True
    except (OSError, TypeError, ValueError) as exc:
        return None, f"cannot read it ({getattr(exc, 'strerror', None) or exc})"
    finally:
        if not sound or not _proc_fd():
            for fd in fds.values():
                os.close(fd)
            fds.clear()
    if not fds:
        return str(folder / PREFIX), ""
    prefix = _linked(fds)
    ids = {name: _stat_id(os.fstat(fd)) for name, fd in fds.items()}
    with contextlib.suppress(OSError):  # info.json too: a damaged one is rebuilt, not trusted
        ids[INFO] = _stat_id(os.stat(folder / INFO))
    _opened[str(folder)] = (prefix, ids)
    return prefix, ""


def _stat_id(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _identity(folder: Path, held: dict) -> dict:
    """The files' identities now. A deleted entry counts as unchanged (this process holds its
    files); a missing or rewritten file inside one does not."""
    if not os.path.lexists(folder):
        return held
    now = {}
    for name in held:
        try:
            now[name] = _stat_id(os.stat(folder / name))
        except OSError:
            now[name] = None
    return now


def _listdir(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _proc_fd() -> bool:
    return os.path.isdir(f"/proc/{os.getpid()}/fd")


def _linked(fds: dict[str, int]) -> str:
    """A private folder of links to the held descriptors: tf.data opens the files by name."""
    holder = Path(tempfile.mkdtemp(prefix="cnnspec-cache-"))
    atexit.register(shutil.rmtree, holder, True)
    for name, fd in fds.items():
        # /proc/<pid>/fd/N opens the file held by N, even after it was deleted
        os.symlink(f"/proc/{os.getpid()}/fd/{fd}", holder / name)
        _held.append(fd)
    return str(holder / PREFIX)


def discard(folder: Path) -> None:
    """Remove a damaged entry (moved aside first, so that no run sees it half deleted)."""
    aside = folder.parent / temporary_name(folder.name)
    try:
        folder.rename(aside)
    except OSError:
        aside = folder
    shutil.rmtree(aside, ignore_errors=True)


def write_failed(exc: Exception, folder: Path, needed: str) -> RunError:
    text = str(exc)
    codes = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO)
    reason = next((os.strerror(c) for c in codes if os.strerror(c) in text), "a write failed")
    return RunError(
        f"cannot fill the disk cache {folder} ({reason}); it needs about {needed}",
        hint="free space on that disk, set CNNSPEC_CACHE to a folder with room, or use "
        "cache: memory / none",
    )


def fill_entry(root: Path, key: str, info: dict, fill: Callable[[str], None], needed: str) -> Path:
    """Fill a new entry ``root/key`` through ``fill(prefix)``, sealed and renamed in place."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / temporary_name(key)
        tmp.mkdir()
    except OSError as exc:
        raise RunError(
            f"cannot create the cache folder {root}: {exc.strerror or exc}",
            hint="set CNNSPEC_CACHE to a writable folder, or use cache: memory / none",
        ) from None
    final = root / key
    try:
        fill(str(tmp / PREFIX))
        try:
            seal(tmp, info)
        except OSError as exc:
            raise write_failed(exc, root, needed) from None
        try:
            tmp.rename(final)  # atomic: a folder is complete or absent
        except OSError:
            if not (final / INFO).is_file():  # not a concurrent run's twin
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
