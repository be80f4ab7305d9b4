"""Listing the images of a data set: class folders (os.scandir) and CSV manifests.

Scanning never opens, stats or decodes an image: names and directory-entry types only, so a
folder of 1,000,000 files is listed in seconds (``benchmarks/data_scale.py --scan``).
"""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

from ..errors import RunError
from .images import IMAGE_EXTENSIONS

Files = list[tuple[str, int]]  # (path, label)

# A manifest row's label column is a class name; these headers are recognised.
_PATH_COLUMNS = ("path", "file", "filename", "image")
_LABEL_COLUMNS = ("label", "class", "class_name", "category")
MAX_MANIFEST_BYTES = 2 * 1024**3  # a sane bound: ~20 M rows of typical length
# A photo is a few MB; a 256 MiB "image" is a mistake (or an attack on memory).
MAX_IMAGE_BYTES = 256 * 1024**2
_EXTENSIONS = frozenset(IMAGE_EXTENSIONS)


def image_files(folder: str | Path) -> list[str]:
    """Every image file under ``folder`` (recursive, hidden entries skipped), sorted.

    Links to folders are never walked (no loops, no escapes); a link that loops or dangles
    where an image is expected is named.
    """
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
                    elif name[name.rfind(".") :].lower() in _EXTENSIONS and _is_file(entry):
                        out.append(entry.path)
        except OSError as exc:
            raise RunError(f"cannot read data folder {top}: {exc.strerror or exc}") from None
    out.sort()
    return out


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError as exc:  # a link that loops (ELOOP), or an unreadable target
        raise RunError(
            f"{entry.path}: a link that cannot be followed ({exc.strerror or exc})",
            hint="remove the link or point it at an image file",
        ) from None


def class_folders(folder: Path, root: Path | None = None) -> list[str]:
    """Names of the class sub-folders of ``folder`` (sorted, hidden ones skipped).

    A class folder may be a link, but only to a folder inside the data folder ``root``
    (default ``folder``) that no other class folder holds or is held by: a link to the data
    folder itself, to another class or out of it (``/``) would read other images under its
    label, or walk the machine.
    """
    base = os.path.realpath(root if root is not None else folder)
    found: dict[str, str] = {}  # class name -> its real path
    try:
        with os.scandir(folder) as entries:
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_symlink():
                    target = _linked_folder(e, base)
                    if target is not None:
                        found[e.name] = target
                elif e.is_dir():
                    found[e.name] = os.path.join(os.path.realpath(folder), e.name)
    except OSError as exc:
        raise RunError(f"cannot read data folder {folder}: {exc.strerror or exc}") from None
    real = sorted(found.items(), key=lambda item: item[1])
    for (name_a, a), (name_b, b) in zip(real, real[1:], strict=False):
        if b == a or b.startswith(a + os.sep):
            raise RunError(
                f"class folders {folder / name_a} and {folder / name_b} hold the same images "
                f"({b} is inside {a})",
                hint="a class folder link must point at a folder of its own class",
            )
    return sorted(found)


def _linked_folder(entry: os.DirEntry, base: str) -> str | None:
    """The real path of a class-folder link inside ``base``; None for a link to a file."""
    target = os.path.realpath(entry.path)
    try:
        is_dir = entry.is_dir()
    except OSError as exc:
        raise RunError(
            f"{entry.path}: a link that cannot be followed ({exc.strerror or exc})",
            hint="remove the link or point it at a class folder",
        ) from None
    if not is_dir:
        return None
    if target == base or base.startswith(target + os.sep):
        raise RunError(
            f"class folder {entry.path} is a link to {target}, which holds the data folder "
            "itself: it would read every class's images under one label",
            hint="point the link at a folder of that class's images",
        )
    if not target.startswith(base + os.sep):
        raise RunError(
            f"class folder {entry.path} is a link to {target}, outside the data folder {base}",
            hint="copy or move the class folder inside the data folder (links out are not "
            "followed)",
        )
    return target


def scan_classes(
    folder: Path, names: list[str] | None = None, root: Path | None = None
) -> tuple[list[str], Files]:
    """Class names (sorted sub-folders) and (file, label) pairs of one class-folder tree."""
    classes = class_folders(folder, root)
    if not classes:
        raise RunError(
            f"data folder {folder} has no class sub-folders",
            hint="put the images of each class in their own sub-folder (folder/cat/*.png, ...)"
            " or give a CSV manifest (path,label)"
            + (
                f"; a folder named {folder.name}/ holds class folders (rename a class called"
                f" '{folder.name}')"
                if folder.name in ("train", "val", "validation", "test")
                else ""
            ),
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
    (recognised by its column names; Excel's UTF-8 byte-order mark is skipped). Every row must
    name a regular, readable image file (a FIFO, a device or a folder is refused without being
    opened); a file listed twice — by any spelling or link — is refused naming both rows.
    """
    rows = _manifest_rows(path)
    start, path_col, label_col = _columns(rows)
    base = path.parent
    pairs: list[tuple[str, str]] = []
    seen: dict[tuple[int, int], tuple[int, str]] = {}  # (device, inode) -> (line, label)
    for number, row in enumerate(rows[start:], start=start + 1):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{number}"
        if len(row) <= max(path_col, label_col):
            raise RunError(
                f"{where}: a manifest row needs a path and a label; received {row!r}",
                hint="write one 'path,label' row per image (paths relative to the CSV)",
            )
        file, label = row[path_col].strip(), row[label_col].strip()
        if not file or not label:
            raise RunError(f"{where}: empty path or label; received {row!r}")
        full = os.path.join(base, file)
        identity = check_image_file(full, where)
        if identity in seen:
            first, first_label = seen[identity]
            what = (
                "is listed twice (first at line {}); a repeated image could land in both the "
                "training and the test split"
                if first_label == label
                else f"has two labels: {label!r} here, {first_label!r} at line {{}}"
            )
            raise RunError(
                f"{where}: {file} {what.format(first)}",
                hint="list each image once, with one label",
            )
        seen[identity] = (number, label)
        pairs.append((full, label))
    if not pairs:
        raise RunError(
            f"manifest {path} lists no images", hint="write one 'path,label' row per image"
        )
    labels = {label for _, label in pairs}
    # Integer labels keep their numeric order (2 before 10); names sort as text. isdecimal and
    # isascii: '²' is a digit to str.isdigit but not an int() literal.
    numeric = all(label.isascii() and label.isdecimal() for label in labels)
    names = sorted(labels, key=int) if numeric else sorted(labels)
    index = {n: i for i, n in enumerate(names)}
    return names, [(f, index[label]) for f, label in pairs]


def _manifest_rows(path: Path) -> list[list[str]]:
    try:
        info = os.stat(path)
        if info.st_size > MAX_MANIFEST_BYTES:
            raise RunError(
                f"manifest {path} is {info.st_size / 1024**3:.1f} GiB; the limit is "
                f"{MAX_MANIFEST_BYTES / 1024**3:.0f} GiB"
            )
        # utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise RunError(f"manifest {path} is not UTF-8 text (byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise RunError(
            f"cannot read manifest {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None


def _columns(rows: list[list[str]]) -> tuple[int, int, int]:
    """(first data row, path column, label column): a recognised header, else 0, 0, 1."""
    if rows and rows[0]:
        header = [c.strip().lower() for c in rows[0]]
        if any(c in _PATH_COLUMNS for c in header) and any(c in _LABEL_COLUMNS for c in header):
            path_col = next(i for i, c in enumerate(header) if c in _PATH_COLUMNS)
            label_col = next(i for i, c in enumerate(header) if c in _LABEL_COLUMNS)
            return 1, path_col, label_col
    return 0, 0, 1


def check_image_file(file: str, where: str = "") -> tuple[int, int]:
    """(device, inode) of ``file`` if it is a regular, readable image file of a sane size;
    else RunError ``where: what``. Never opens it (a FIFO would block, /dev/zero never ends)."""
    at = f"{where}: " if where else ""
    try:
        info = os.stat(file)
    except ValueError:  # an embedded NUL byte
        raise RunError(f"{at}the path {file!r} holds a NUL byte") from None
    except FileNotFoundError:
        raise RunError(f"{at}image file not found: {os.path.abspath(file)}") from None
    except OSError as exc:
        raise RunError(f"{at}cannot read {file}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise RunError(
            f"{at}{file} is a folder, not an image file",
            hint="list image files, one per row (a folder of class folders is a data source itself)",
        )
    if not stat.S_ISREG(info.st_mode):
        raise RunError(f"{at}{file} is not a regular file (a device, FIFO or socket)")
    if info.st_size > MAX_IMAGE_BYTES:
        raise RunError(
            f"{at}{file} is {info.st_size / 1024**2:.0f} MiB; an image file may have at most "
            f"{MAX_IMAGE_BYTES // 1024**2} MiB"
        )
    if not os.access(file, os.R_OK):
        raise RunError(f"{at}cannot read {file}: permission denied")
    return info.st_dev, info.st_ino


# Public names for the label-table manifests (tables.py), which share the row reading.
PATH_COLUMNS = _PATH_COLUMNS
manifest_rows = _manifest_rows
