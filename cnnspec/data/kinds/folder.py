"""An image folder: one sub-folder per class, or train/ [val/|validation/] [test/] sub-folders
that each hold the class sub-folders."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import RunError
from ..registry import FileParts, SourceKind

SPLIT_FOLDERS = ("train", "val", "validation", "test")


def read(source: str, req) -> FileParts:
    from ..progress import progress

    # Scanned from the real path: ./photos and /abs/photos list the same file names (one
    # disk cache, and messages name absolute paths).
    root = Path(os.path.realpath(source))
    with progress("scanning", None, unit="files", echo=req.echo) as bar:
        train, val, test, names = _scan(root, req)
        bar.advance(sum(len(p or []) for p in (train, val, test)))
    return FileParts(train, val, test, names, str(root))


def _scan(root: Path, req):
    from ..scan import class_folders, scan_classes
    from ..splits import split_files

    sub = class_folders(root)
    if "train" not in sub:
        names, files = scan_classes(root)
        return (*split_files(files, req.validation_split, req.test_split), names)
    others = [s for s in sub if s not in SPLIT_FOLDERS]
    if others:
        raise RunError(
            f"data folder {root} holds train/ beside the class folders {others}: a folder "
            "with train/ is read as split folders (train/ [val/] [test/], each holding "
            "class folders)",
            hint="rename a class called 'train', or move the class folders into train/",
        )
    names, train = scan_classes(root / "train", root=root)
    val_name = "val" if "val" in sub else "validation" if "validation" in sub else None
    val = scan_classes(root / val_name, names, root)[1] if val_name else None
    test = scan_classes(root / "test", names, root)[1] if "test" in sub else None
    if val is None:
        train, val, _ = split_files(train, req.validation_split, 0.0)
    return train, val, test, names


KIND = SourceKind("folder", "an image folder", os.path.isdir, read)
