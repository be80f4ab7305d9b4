"""Listing the images of a data set: class folders (os.scandir) and CSV manifests.

Scanning never opens, stats or decodes an image: names and directory-entry types only, so a
folder of 1,000,000 files is listed in seconds (``benchmarks/data_scale.py --scan``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import RunError
from .images import IMAGE_EXTENSIONS

Files = list[tuple[str, int]]  # (path, label)

# A manifest row's label column is a class name; these headers are recognised.
_PATH_COLUMNS = ("path", "file", "filename", "image")
_LABEL_COLUMNS = ("label", "class", "class_name", "category")
MAX_MANIFEST_BYTES = 2 * 1024**3
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)  # a sane bound: ~20 M rows of typical length


def image_files(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (recursive, hidden entries skipped), sorted."""
    out: list[str] = []
    stack = [os.fspath(folder)]
    while stack:
        top = stack.pop()
        try:
            with os.scandir(top) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    # is_dir/is_file use the entry's type from the directory listing: no stat
                    # on Linux/macOS file systems that report it.
                    if entry.is_dir(follow_symlinks=False):  # no link loops, no escapes
                        stack.append(entry.path)
                    elif name[name.rfind(".") :].lower() in _EXTENSIONS and entry.is_file():
                        out.append(entry.path)
        except OSError as exc:
            raise RunError(f"cannot read data folder {top}: {exc.strerror or exc}") from None
    out.sort()
    return out


def class_folders(folder: Path) -> list[str]:
    """Names of the class sub-folders of ``folder`` (sorted, hidden ones skipped)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise RunError(f"cannot read data folder {folder}: {exc.strerror or exc}") from None


def scan_classes(folder: Path, names: list[str] | None = None) -> tuple[list[str], Files]:
    """Class names (sorted sub-folders) and (file, label) pairs of one class-folder tree."""
    classes = class_folders(folder)
    if not classes:
        raise RunError(
            f"data folder {folder} has no class sub-folders",
            hint="put the images of each class in their own sub-folder (folder/cat/*.png, ...)"
            " or give a CSV manifest (path,label)",
        )
    if names is not None and classes != names:
        raise RunError(
            f"data folder {folder} has classes {classes} but the training folder has {names}"
        )
    files: Files = []
    for label, cls in enumerate(classes):
        images = image_files(folder / cls)
        if not images:
            raise RunError(
                f"class folder {folder / cls} has no images",
                hint="add images (" + ", ".join(IMAGE_EXTENSIONS) + ") or remove the folder",
            )
        files += [(f, label) for f in images]
    return classes, files


def read_manifest(path: Path) -> tuple[list[str], Files]:
    """Class names (sorted) and (file, label) pairs of a CSV manifest ``path,label``.

    Paths are relative to the CSV's folder (absolute ones are kept). A header row is optional
    (recognised by its column names). Files are not checked here: a missing one is named when
    it is decoded.
    """
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise RunError(
                f"manifest {path} is {size / 1024**3:.1f} GiB; the limit is "
                f"{MAX_MANIFEST_BYTES / 1024**3:.0f} GiB"
            )
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise RunError(f"manifest {path} is not UTF-8 text (byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise RunError(
            f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    start = 0
    path_col, label_col = 0, 1
    if rows and rows[0]:
        header = [c.strip().lower() for c in rows[0]]
        if any(c in _PATH_COLUMNS for c in header) and any(c in _LABEL_COLUMNS for c in header):
            path_col = next(i for i, c in enumerate(header) if c in _PATH_COLUMNS)
            label_col = next(i for i, c in enumerate(header) if c in _LABEL_COLUMNS)
            start = 1
    base = path.parent
    pairs: list[tuple[str, str]] = []
    for number, row in enumerate(rows[start:], start=start + 1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) <= max(path_col, label_col):
            raise RunError(
                f"{path}:{number}: a manifest row needs a path and a label; received {row!r}",
                hint="write one 'path,label' row per image (paths relative to the CSV)",
            )
        file, label = row[path_col].strip(), row[label_col].strip()
        if not file or not label:
            raise RunError(f"{path}:{number}: empty path or label; received {row!r}")
        pairs.append((os.path.join(base, file), label))
    if not pairs:
        raise RunError(
            f"manifest {path} lists no images", hint="write one 'path,label' row per image"
        )
    labels = {label for _, label in pairs}
    # Integer labels keep their numeric order (2 before 10); names sort as text.
    numeric = all(label.isdigit() for label in labels)
    names = sorted(labels, key=int) if numeric else sorted(labels)
    index = {n: i for i, n in enumerate(names)}
    return names, [(f, index[label]) for f, label in pairs]
