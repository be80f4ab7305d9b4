"""Label tables: a float vector of labels per example, with named columns.

What the multilabel and regression tasks (and heads with a label column) read, beside the
integer class index of a classification source. A CSV manifest with a header:

- ``path,labels``: labels separated by ``;`` (an empty field = no label): k-hot columns, one
  per label found (sorted);
- ``path,<col>,<col>...``: numeric columns (0/1 per class for multilabel, targets for
  regression; ``train.targets`` / ``heads.<h>.label`` choose among them).

Paths are relative to the CSV (absolute ones are kept); every row names a regular image file.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import RunError
from .scan import PATH_COLUMNS, check_image_file, manifest_rows

SET_COLUMN = "labels"
SEPARATOR = ";"


def read_table_manifest(path: Path) -> tuple[list[str], list[tuple[str, np.ndarray]]]:
    """(column names, (file, float32 label row) pairs) of a label-table manifest."""
    rows = manifest_rows(path)
    header = [c.strip() for c in rows[0]] if rows else []
    lower = [c.lower() for c in header]
    path_cols = [i for i, c in enumerate(lower) if c in PATH_COLUMNS]
    if not path_cols or len(header) < 2:
        raise RunError(
            f"{path}:1: a label-table manifest needs a header naming its path column and its "
            f"label columns; received {rows[0] if rows else 'an empty file'!r}",
            hint="write 'path,labels' (labels separated by ';') or 'path,<column>,...'",
        )
    pc = path_cols[0]
    label_cols = [i for i in range(len(header)) if i != pc]
    base = path.parent
    entries: list[tuple[str, list[str]]] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"{path}:{number}"
        if len(row) != len(header):
            raise RunError(
                f"{where}: the row has {len(row)} fields but the header has {len(header)}; "
                f"received {row!r}"
            )
        full = str(base / row[pc].strip())
        check_image_file(full, where)
        entries.append((full, [row[i].strip() for i in label_cols]))
    if not entries:
        raise RunError(f"manifest {path} lists no images", hint="write one row per image")
    if len(label_cols) == 1 and lower[label_cols[0]] == SET_COLUMN:
        return _label_sets(entries)
    return [header[i] for i in label_cols], _numbers(entries, path, rows)


def _label_sets(entries) -> tuple[list[str], list[tuple[str, np.ndarray]]]:
    sets = [[t.strip() for t in cells[0].split(SEPARATOR) if t.strip()] for _, cells in entries]
    found = {label for s in sets for label in s}
    numeric = all(label.isascii() and label.isdecimal() for label in found)
    names = sorted(found, key=int) if numeric else sorted(found)
    index = {n: i for i, n in enumerate(names)}
    out = []
    for (file, _), labels in zip(entries, sets, strict=True):
        row = np.zeros(len(names), np.float32)
        row[[index[label] for label in labels]] = 1.0
        out.append((file, row))
    return names, out


def _numbers(entries, path: Path, rows) -> list[tuple[str, np.ndarray]]:
    out = []
    for number, (file, cells) in enumerate(entries, start=2):
        try:
            values = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise RunError(
                f"{path}:{number}: a label column holds {bad!r}, not a number",
                hint="label-table columns are numbers (0/1 per label, or regression targets)",
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise RunError(f"{path}:{number}: a label value is not finite; received {cells!r}")
        out.append((file, np.asarray(values, np.float32)))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def read_npz_table(source: str):
    """x, y as a float32 label table (N, columns), the column names (``columns`` or
    ``class_names`` in the file, else 0..K-1) and the pixel-scaling rule of an .npz."""
    from .arrays import open_npz

    path, x, y, names = open_npz(source, ("columns", "class_names"))
    return array_table(x, y, names, str(path))


def array_table(x: np.ndarray, y: np.ndarray, names: list[str] | None, what: str):
    """x, y as a float32 label table (N, columns), the column names (default 0..K-1) and the
    pixel-scaling rule, from arrays (an .npz's, or given in Python, named ``what``)."""
    from .arrays import check_arrays

    if y.dtype.kind not in "uifb" or len(y) != len(x):
        raise RunError(
            f"{what}: y must be numbers, one row per image ({len(x)}); received {y.shape} {y.dtype}"
        )
    table = y.reshape(len(y), -1).astype(np.float32)
    if not np.isfinite(table).all():
        raise RunError(f"{what}: y holds values that are not finite")
    x, _, _, scaling = check_arrays(x, np.zeros(len(x), np.int32), ["0"], what)
    names = names or [str(i) for i in range(table.shape[1])]
    if len(names) != table.shape[1]:
        raise RunError(f"{what}: y has {table.shape[1]} columns but {len(names)} names")
    return x, table, names, scaling
