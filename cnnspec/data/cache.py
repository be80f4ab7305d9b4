"""Where decoded images are kept between epochs: memory, a disk cache, or nowhere (streaming).

``cache: auto`` (the default) estimates the decoded size (uint8 at the spec's input size) and
keeps it in memory when it fits the budget (a quarter of the machine's memory; override with
``CNNSPEC_CACHE_BUDGET``, e.g. ``8G``), else on disk under the cache directory
(``$CNNSPEC_CACHE``, default ``~/.cache/cnnspec``) when the disk has room, else streams (decodes
every epoch). A disk cache is a folder per (data, input size, file list): the next run with the
same data reuses it, and deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from . import diskcache
from .progress import progress

CACHE_MODES = ("auto", "memory", "disk", "none")
CACHE_FORMAT = 2  # bump when what a cache folder holds changes: old folders are not reused
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def cache_root() -> Path:
    """The disk cache directory: $CNNSPEC_CACHE, else $XDG_CACHE_HOME/cnnspec, else ~/.cache."""
    env = os.environ.get("CNNSPEC_CACHE")
    if env:
        return _expand(env, "CNNSPEC_CACHE")
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (_expand(xdg, "XDG_CACHE_HOME") if xdg else _expand("~/.cache", "HOME")) / "cnnspec"


def _expand(text: str, variable: str) -> Path:
    """``text`` with ``~``/``~user`` expanded; RunError for a user or home that does not exist."""
    path = os.path.expanduser(text)
    if path.startswith("~"):  # expanduser leaves an unknown ~user as it is
        raise RunError(
            f"{variable}={text!r}: no user {path[1:].split('/')[0]!r} on this machine, so its "
            "home folder is unknown",
            hint=f"set {variable} to an absolute folder",
        )
    return Path(path)


def total_memory() -> int:
    """Bytes of memory this process may use: the machine's, or a smaller cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def parse_size(text: str) -> int:
    """``8G``, ``512M``, ``1.5GiB``, ``1000000`` -> bytes; ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def memory_budget() -> tuple[int, str]:
    """(bytes, where the figure comes from) for an in-memory cache."""
    env = os.environ.get("CNNSPEC_CACHE_BUDGET")
    if env:
        try:
            return parse_size(env), "CNNSPEC_CACHE_BUDGET"
        except ValueError:
            raise RunError(
                f"CNNSPEC_CACHE_BUDGET must be a size such as 8G or 512M; received {env!r}"
            ) from None
    total = total_memory()
    return total // 4, f"a quarter of {human(total)} memory"


def human(nbytes: float) -> str:
    """1536 -> '1.5 KB' (binary units, as memory is counted)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1024 or unit == "TB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TB"  # unreachable


@dataclass(frozen=True)
class Choice:
    """The cache mode chosen for a data set, and why (printed in the run's first lines)."""

    mode: str  # memory | disk | none
    reason: str
    folder: Path | None = None  # the disk cache's root (mode disk)

    def describe(self) -> str:
        where = f" in {self.folder}" if self.folder else ""
        name = {"memory": "in memory", "disk": "on disk", "none": "none (streaming)"}[self.mode]
        return f"cache: {name}{where}: {self.reason}"


def choose(requested: str, nbytes: int, what: str) -> Choice:
    """Resolve ``requested`` (auto|memory|disk|none) for ``nbytes`` of decoded ``what``."""
    if requested not in CACHE_MODES:
        raise RunError(f"cache must be one of {', '.join(CACHE_MODES)}; received {requested!r}")
    size = f"{human(nbytes)} of {what}"
    if requested == "none":
        return Choice("none", f"asked for (cache: none); {size} decoded every epoch")
    if requested == "memory":
        return Choice("memory", f"asked for (cache: memory); {size}")
    root = cache_root()
    if requested == "disk":
        return Choice("disk", f"asked for (cache: disk); {size}", root)
    budget, source = memory_budget()
    if nbytes <= budget:
        return Choice("memory", f"auto: {size} fits the memory budget {human(budget)} ({source})")
    over = f"auto: {size} is over the memory budget {human(budget)} ({source})"
    free = _free_space(root)
    if free is not None and nbytes * 1.1 + 512 * 1024**2 <= free:
        return Choice("disk", f"{over}; the disk has {human(free)} free", root)
    room = "cannot be created" if free is None else f"has only {human(free)} free"
    return Choice("none", f"{over} and the cache folder {root} {room}; streaming from the files")


def _free_space(root: Path) -> int | None:
    probe = root
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    try:
        if not probe.is_dir() or not os.access(probe, os.W_OK):
            return None
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def key(parts: Sequence[str], paths: Sequence[str] = (), labels: Any = ()) -> str:
    """A cache folder name from what determines its content (data, input size, file list)."""
    digest = hashlib.sha256(f"cnnspec-cache-{CACHE_FORMAT}".encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    digest.update(b"\1")
    # one join and one array, not a Python call per file (1,000,000 files: well under 1 s)
    digest.update("\n".join(paths).encode("utf-8", "surrogateescape"))
    digest.update(np.asarray(labels, np.int64).tobytes())
    return digest.hexdigest()[:24]


def apply(
    ds,
    choice: Choice,
    *,
    name: str,
    count: int,
    folder_key: str,
    info: dict,
    on_error: Callable[[int], None],
    echo: Callable[[str], None] | None = None,
):
    """``ds`` cached as ``choice`` says, filled now (with progress) so that a bad file fails here.

    ``on_error(n)`` is called when decoding fails after ``n`` good elements; it should raise a
    RunError naming the file.
    """

    if choice.mode == "none":
        return ds
    if choice.mode == "memory":
        cached = ds.cache()
        _fill(cached, count, f"caching {name} split in memory", on_error, echo)
        return cached
    assert choice.folder is not None
    root = choice.folder
    diskcache.sweep(root)
    final = root / folder_key
    info = {**info, "images": count}
    if os.path.lexists(final):  # ours (a key-named folder), complete or damaged
        prefix, problem = diskcache.open_entry(final, info)
        if prefix is not None:
            if echo:
                echo(f"{name} split: reusing the disk cache {final}")
            return _read(ds, prefix, count)
        _warn(f"warning: the disk cache {final} is damaged ({problem}); rebuilding it", echo)
        diskcache.discard(final)
    needed = human(count * _element_bytes(ds))

    def fill(prefix: str) -> None:
        what = f"caching {name} split on disk"
        _fill(ds.cache(prefix), count, what, on_error, echo, (prefix, needed))

    diskcache.fill_entry(root, folder_key, info, fill, needed)
    prefix, problem = diskcache.open_entry(final, info)
    if prefix is None:  # deleted or damaged in the instant since it was filled
        _warn(f"warning: the disk cache {final} could not be opened ({problem}); streaming", echo)
        return ds
    return _read(ds, prefix, count)


def _read(ds, prefix: str, count: int):
    import tensorflow as tf

    # A complete cache is read without touching the files; the upstream map never runs.
    return ds.cache(prefix).apply(tf.data.experimental.assert_cardinality(count))


def _element_bytes(ds) -> int:
    spec = ds.element_spec[0]
    if not spec.shape.is_fully_defined():
        return 0
    return int(np.prod(spec.shape)) * spec.dtype.size


def _warn(text: str, echo) -> None:
    if echo is not None:
        echo(text)
    else:
        import sys

        print(text, file=sys.stderr)


def _fill(ds, count: int, what: str, on_error: Callable[[int], None], echo, writing=None) -> None:
    """Iterate ``ds`` once (filling its cache). ``writing``: (cache file prefix, size needed)
    of a disk fill, whose write errors (full disk, quota, file size limit) are said as such."""
    import tensorflow as tf

    from .images import read_errors

    with progress(what, count, echo=echo) as bar:
        try:
            for x, _ in ds.batch(64).prefetch(1):  # little memory: a batch is only counted
                bar.advance(int(x.shape[0]))
        except (*read_errors(), tf.errors.ResourceExhaustedError, tf.errors.InternalError) as exc:
            if writing is not None and os.path.dirname(writing[0]) in str(exc):
                raise diskcache.write_failed(exc, cache_root(), writing[1]) from None
            on_error(bar.count)  # names a file that does not decode, if that was the cause
            raise
