"""An .npz file with arrays x (N,H,W[,C]) and y (N,) or one-hot (N,K), optional class_names."""

from __future__ import annotations

from pathlib import Path

from ..registry import ArrayParts, SourceKind


def read(source: str, req):
    from ..arrays import read_npz
    from ..masks import npz_has_masks
    from ..splits import split_arrays

    if npz_has_masks(source):  # y (N, H, W): a mask per image (segmentation)
        from ..masks import read_npz as read_npz_masks

        return read_npz_masks(source, req)
    if req.table:  # y as a label table: k-hot rows, target vectors
        from ..tables import read_npz_table

        x, y, names, scaling = read_npz_table(source)
    else:
        x, y, names, scaling = read_npz(source)
    st = Path(source).stat()
    identity = [str(Path(source).resolve()), str(st.st_size), str(st.st_mtime_ns)]
    splits = split_arrays(x, y, req.validation_split, req.test_split)
    parts = ArrayParts(splits, names, identity, [scaling])
    if req.table:
        parts.columns = list(names)
        identity.append("table")
    return parts


KIND = SourceKind("npz", "an .npz file (x, y)", lambda s: s.lower().endswith(".npz"), read)
