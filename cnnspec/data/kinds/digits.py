"""scikit-learn's bundled 8x8 digits: the default data, no download."""

from __future__ import annotations

from ..arrays import digits
from ..registry import ArrayParts, SourceKind
from ..splits import split_arrays


def read(source: str, req) -> ArrayParts:
    x, y, names = digits()
    return ArrayParts(split_arrays(x, y, req.validation_split, req.test_split), names, ["digits"])


KIND = SourceKind("digits", "digits", lambda s: s == "digits", read, path=False)
