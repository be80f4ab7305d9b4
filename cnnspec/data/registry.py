"""The data sources cnnspec reads, one module each under ``cnnspec/data/kinds/``.

A source kind says how messages and docs name it (``shows``), which sources it takes
(``matches``) and how it reads one (``read``: arrays or a file list, see ``ArrayParts`` and
``FileParts``; ``sources.load_data`` turns either into cached tf.data splits). Adding a source
is one new module listed in ``kinds()``; every list of accepted sources is derived from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunError

Files = list[tuple[str, int]]  # (path, label)


@dataclass(frozen=True)
class SourceKind:
    name: str
    shows: str  # how the accepted list names it: "digits", "an image folder", ...
    matches: Callable[[str], bool]
    read: Callable[[str, Any], ArrayParts | FileParts]  # (source, load_data's request)
    path: bool = True  # a path on disk (checked against system folders), not a name
    objects: bool = False  # reads Python objects (arrays in memory), never a name or a path
    label: Callable[[Any], str] = str  # how messages and Data.source name a source


@dataclass
class ArrayParts:
    """What an array source read: (x, y) per split (None when absent), in [0, 255]."""

    splits: tuple[Any, Any, Any]
    names: list[str]
    identity: list[str]  # what determines the content (a disk cache's key)
    notes: list[str] = field(default_factory=list)  # e.g. the pixel-scaling rule applied
    columns: list[str] = field(default_factory=list)  # a label table's columns (tables.py)
    column_classes: dict[str, list[str]] = field(default_factory=dict)  # of class columns


@dataclass
class FileParts:
    """What a file source read: (path, label) per split (None when absent)."""

    train: Files
    val: Files | None
    test: Files | None
    names: list[str]
    root: str  # the real path of the folder or manifest
    columns: list[str] = field(default_factory=list)  # labels are rows of a table (tables.py)


def kinds() -> tuple[SourceKind, ...]:
    """Every source kind, in the order they are tried."""
    from .kinds import canvas, digits, folder, keras, manifest, memory, npz, segmentation

    return (
        digits.KIND, canvas.MULTILABEL, canvas.COUNTS, segmentation.DIGITS, keras.KIND,
        npz.KIND, segmentation.MANIFEST, manifest.KIND, segmentation.FOLDER, folder.KIND,
        memory.KIND,
    )  # fmt: skip


def accepted() -> str:
    """The accepted sources, for messages and docs: 'digits, mnist, ..., or an .npz file'."""
    shows = [k.shows for k in kinds()]
    return ", ".join(shows[:-1]) + ", or " + shows[-1]


def find(source: str) -> SourceKind:
    """The kind that reads ``source``; RunError naming what is accepted otherwise."""
    every = kinds()
    if not isinstance(source, str):  # arrays or datasets given in Python
        for kind in every:
            if kind.objects and kind.matches(source):
                return kind
        raise RunError(
            f"data of type {type(source).__name__} is not a data source", hint=f"use {accepted()}"
        )
    for kind in every:
        if not kind.path and kind.matches(source):
            return kind
    check_not_system(source)
    for kind in every:
        if kind.path and kind.matches(source):
            return kind
    if os.path.lexists(source):
        raise RunError(f"data {source} is not a data source", hint=f"use {accepted()}")
    raise RunError(f"data folder not found: {os.path.abspath(source)}", hint=f"use {accepted()}")


# Pseudo file systems are never data (and scanning them can hang or walk the whole machine).
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def check_not_system(source: str) -> None:
    resolved = os.path.realpath(source)
    if any(resolved == r or resolved.startswith(r + "/") for r in _SYSTEM_ROOTS):
        raise RunError(
            f"data {source} is a system folder ({resolved}), not a data set",
            hint=f"use {accepted()}",
        )
