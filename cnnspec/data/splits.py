"""Deterministic, stratified train/val/test splits (a property of the data, not of the run)."""

from __future__ import annotations

import numpy as np

# Splits are a property of the data, not of the training run: one fixed seed.
SPLIT_SEED = 1234


def split_arrays(x, y, validation_split, test_split):
    """Stratified, deterministic train/val/test split of arrays (None for an empty part)."""
    rng = np.random.default_rng(SPLIT_SEED)
    parts: list[list[int]] = [[], [], []]
    # A label table (multilabel rows, regression targets) is split at random, not by class.
    strata = y if y.ndim == 1 and y.dtype.kind in "iuO" else np.zeros(len(y), np.int64)
    for label in np.unique(strata):
        idx = rng.permutation(np.flatnonzero(strata == label))
        n_test = int(round(len(idx) * test_split))
        n_val = int(round(len(idx) * validation_split))
        parts[2] += idx[:n_test].tolist()
        parts[1] += idx[n_test : n_test + n_val].tolist()
        parts[0] += idx[n_test + n_val :].tolist()
    out = []
    for part in parts:
        order = np.sort(np.asarray(part, dtype=np.int64))
        out.append((x[order], y[order]) if len(order) else None)
    return tuple(out)


def split_files(files, validation_split, test_split):
    """(path, label) pairs split as ``split_arrays`` splits arrays."""
    paths = np.array([f for f, _ in files], dtype=object)
    rows = [label for _, label in files]
    table = bool(rows) and isinstance(rows[0], np.ndarray)  # label-table rows (tables.py)
    labels = np.stack(rows).astype(np.float32) if table else np.array(rows, dtype=np.int64)
    parts = split_arrays(paths, labels, validation_split, test_split)
    return tuple(
        None if p is None else list(zip(p[0].tolist(), p[1].tolist(), strict=True)) for p in parts
    )
