"""Where an export goes: checked before any work, replaced only when it is an earlier export of
the same format, moved into place by rename."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

from ..errors import RunError
from ..modelio import meta_path_for
from ..outpaths import check_output, shown
from .base import ExportFormat, is_file_with
from .formats import REGISTRY


def check_destination(dest: Path, fmt: ExportFormat, overwrite: bool) -> None:
    """Refuse a destination of the wrong kind, protected, unwritable, or taken (see --overwrite)."""
    where = f"-o {shown(dest)}"
    if fmt.suffix and dest.suffix != fmt.suffix:
        raise RunError(f"{where}: a {fmt.name} export must end in '{fmt.suffix}'")
    file_suffixes = {f.suffix for f in REGISTRY.values() if f.suffix} | {".pb"}
    if not fmt.suffix and dest.suffix in file_suffixes:
        raise RunError(f"{where}: a {fmt.name} export is a folder; give a folder name")
    refuse_protected(dest)
    check_output(dest, "-o", "file" if fmt.suffix else "tree")  # also: a name too long
    meta_dest = meta_path_for(dest)
    for path in (dest, meta_dest):
        if not (path.exists() or path.is_symlink()):
            continue
        if not overwrite:
            raise RunError(
                f"{shown(path)} already exists", hint="pass --overwrite or choose another -o"
            )
        if path.is_symlink():
            raise RunError(
                f"{where}: {path} is a symbolic link; --overwrite replaces only an earlier "
                "export, never a link",
                hint="remove the link yourself or choose another -o",
            )
        recognised, why = is_export_meta(path) if path == meta_dest else fmt.recognise(path)
        if not recognised:
            raise RunError(
                f"{where}: refusing to replace {path}: {why}; --overwrite replaces only an "
                f"earlier {fmt.name} export",
                hint="move it away yourself or choose another -o",
            )


def refuse_protected(dest: Path) -> None:
    """Never export onto /, $HOME, the current directory or a folder above it."""
    try:
        resolved = dest.resolve()
    except OSError:  # unresolvable (a name too long): check_output names the reason
        return
    cwd = Path.cwd().resolve()
    protected = {Path(resolved.anchor), Path.home().resolve()}
    if resolved in protected or resolved == cwd or resolved in cwd.parents:
        raise RunError(
            f"-o {dest}: refusing to export onto {resolved} (the current directory, a folder "
            "above it, the home folder or the root)",
            hint="give the export its own name, e.g. -o exports/model_savedmodel",
        )


def is_export_meta(path: Path) -> tuple[bool, str]:
    """(path is the metadata file of a cnnspec export, why not)."""
    ok, why = is_file_with(path, "metadata")
    if not ok:
        return ok, why
    if path.stat().st_size > 1024**2:
        return False, "it is too large to be export metadata"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False, "it is not JSON"
    if not (isinstance(meta, dict) and {"format", "input_shape", "class_names"} <= set(meta)):
        return False, "it is not the metadata of a cnnspec export"
    return True, ""


def move_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` onto ``dest``; a folder at ``dest`` is moved aside first, then removed."""
    if dest.is_dir() and not dest.is_symlink():
        # A directory cannot be replaced by rename while it has contents: move it aside first.
        aside = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(dest, aside)
        try:
            os.replace(tmp, dest)
        except BaseException:
            os.replace(aside, dest)
            raise
        remove(aside)
    else:
        os.replace(tmp, dest)


def remove(path: Path) -> None:
    """Remove a file or a folder if it is there (a temporary export)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size
