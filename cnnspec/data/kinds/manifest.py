"""A CSV manifest: path,label rows (paths relative to the CSV), an optional header."""

from __future__ import annotations

import os
from pathlib import Path

from ..registry import FileParts, SourceKind


def read(source: str, req) -> FileParts:
    from ..progress import progress
    from ..scan import read_manifest
    from ..splits import split_files

    root = Path(os.path.realpath(source))
    with progress("scanning", None, unit="files", echo=req.echo) as bar:
        if req.table:  # multilabel / regression / label columns: a header names them
            from ..tables import read_table_manifest

            names, files = read_table_manifest(root)
        else:
            names, files = read_manifest(root)
        bar.advance(len(files))
    train, val, test = split_files(files, req.validation_split, req.test_split)
    return FileParts(train, val, test, names, str(root), list(names) if req.table else [])


def matches(source: str) -> bool:
    return source.lower().endswith(".csv") and os.path.isfile(source)


KIND = SourceKind("manifest", "a CSV manifest (path,label)", matches, read)
