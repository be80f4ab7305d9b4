"""scikit-learn's bundled 8x8 digits: the default data, no download."""

from __future__ import annotations

from ..registry import ArrayParts, SourceKind


def read(source: str, req) -> ArrayParts:
    from ..arrays import digits
    from ..splits import split_arrays

    x, y, names = digits()
    return ArrayParts(split_arrays(x, y, req.validation_split, req.test_split), names, ["digits"])


KIND = SourceKind("digits", "digits", lambda s: s == "digits", read, path=False)
