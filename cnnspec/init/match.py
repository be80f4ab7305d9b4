"""Match a spec's layers to a source's weights: by name first, then by structure.

1. **by name** (after ``rename:``): a target layer takes the source layer of the same name
   and kind — a spec edited from the one that was trained keeps its stable names;
2. **by structure**: the layers left on both sides are aligned in order by (kind, shapes),
   then the gaps by kind alone (``difflib``: an inserted or removed layer shifts nothing), for
   sources whose names differ (keras.applications' ``conv2_block1_1_conv``).

A tensor loads only when its shape is the target's, or when it is the first conv's kernel
and ``adapt_channels`` says how to change its input channels (timm's rules).
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field

from ..spec.init import InitSpec
from .source import SourceLayer, WeightIndex
from .targets import TargetLayer

#: Statuses of a row; the first two count as initialised.
LOADED, ADAPTED, MISMATCH, FRESH, SKIPPED = (
    "loaded",
    "adapted",
    "shape mismatch",
    "fresh",
    "skipped",
)
INITIALISED = (LOADED, ADAPTED)


@dataclass(frozen=True)
class Row:
    """One target layer of the transfer table."""

    layer: str
    kind: str
    status: str
    params: int
    source: str | None = None
    shapes: tuple = ()
    source_shapes: tuple = ()
    how: str = ""  # 'name' / 'structure' (and the adaptation)

    def as_dict(self) -> dict:
        return {
            "layer": self.layer,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "source": self.source,
            "shapes": [list(s) for s in self.shapes],
            "source_shapes": [list(s) for s in self.source_shapes],
            "how": self.how,
        }


@dataclass
class TransferTable:
    """Which parameters of the spec start from the source, layer by layer."""

    source: str
    rows: list[Row]
    total_params: int  # of the whole spec
    source_params: int
    unused: list[str] = field(default_factory=list)  # source layers nothing took
    uncovered: list[str] = field(default_factory=list)  # spec nodes no rule covers
    min_loaded: float = 0.0

    @property
    def loaded_params(self) -> int:
        return sum(r.params for r in self.rows if r.status in INITIALISED)

    @property
    def share(self) -> float:
        return self.loaded_params / self.total_params if self.total_params else 0.0

    @property
    def source_share(self) -> float:
        """The share of the source's parameters that found a place."""
        used = sum(
            r.params if r.status == LOADED else _prod_sum(r.source_shapes)
            for r in self.rows
            if r.status in INITIALISED
        )
        return used / self.source_params if self.source_params else 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def pairs(self) -> list[Row]:
        return [r for r in self.rows if r.status in INITIALISED]

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "loaded_params": self.loaded_params,
            "total_params": self.total_params,
            "share": round(self.share, 6),
            "source_params": self.source_params,
            "source_share": round(self.source_share, 6),
            "min_loaded": self.min_loaded,
            "counts": self.counts(),
            "rows": [r.as_dict() for r in self.rows],
            "unused_source_layers": list(self.unused),
            "uncovered": list(self.uncovered),
        }


def _prod_sum(shapes: tuple) -> int:
    total = 0
    for s in shapes:
        n = 1
        for d in s:
            n *= d
        total += n
    return total


def _renamed(name: str, rename: dict[str, str]) -> str:
    if name in rename:
        return rename[name]
    for old, new in rename.items():
        if old.endswith("*") and new.endswith("*") and name.startswith(old[:-1]):
            return new[:-1] + name[len(old) - 1 :]
    return name


def adaptable(target: TargetLayer, source: SourceLayer, mode: str | None) -> bool:
    """The first conv whose kernel differs from the source's in its input channels only."""
    if mode is None or not target.first or target.kind != "conv" or source.kind != "conv":
        return False
    t, s = target.shapes, source.shapes
    return (
        len(t) == len(s)
        and len(t[0]) == len(s[0])
        and t[0][:-2] == s[0][:-2]
        and t[0][-1] == s[0][-1]
        and t[1:] == s[1:]
    )


def _row(target: TargetLayer, source: SourceLayer, how: str, mode: str | None) -> Row:
    if target.shapes == source.shapes:
        status = LOADED
    elif adaptable(target, source, mode):
        status, how = (
            ADAPTED,
            f"{how}, {mode} of {source.shapes[0][-2]} -> {target.shapes[0][-2]} channels",
        )
    else:
        status = MISMATCH
    return Row(
        target.name,
        target.kind,
        status,
        target.params,
        source.name,
        target.shapes,
        source.shapes,
        how,
    )


def _align(targets: list[TargetLayer], sources: list[SourceLayer], key) -> list[tuple[int, int]]:
    a = [key(t) for t in targets]
    b = [key(s) for s in sources]
    blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
    return [(blk.a + k, blk.b + k) for blk in blocks for k in range(blk.size)]


def match(
    targets: list[TargetLayer],
    index: WeightIndex,
    init: InitSpec,
    total_params: int,
    uncovered: list[str] = (),
) -> TransferTable:
    """The transfer table of ``targets`` against the source ``index``."""
    rename = init.rename
    skipped = {t.name for t in targets if any(fnmatch.fnmatchcase(t.name, p) for p in init.skip)}
    by_name = {_renamed(s.name, rename): s for s in index.layers}
    paired: dict[str, tuple[SourceLayer, str]] = {}
    for t in targets:
        s = by_name.get(t.name)
        if t.name not in skipped and s is not None and s.kind == t.kind:
            paired[t.name] = (s, "name")
    taken = {id(s) for s, _ in paired.values()}
    rest_t = [t for t in targets if t.name not in paired and t.name not in skipped]
    rest_s = [s for s in index.layers if id(s) not in taken]
    # Structure: exact (kind, shapes) runs first, then the gaps between them by kind alone.
    exact = _align(rest_t, rest_s, lambda x: (x.kind, x.shapes))
    bounds = [(-1, -1), *exact, (len(rest_t), len(rest_s))]
    pairs = list(exact)
    for (a0, b0), (a1, b1) in zip(bounds, bounds[1:], strict=False):
        gap_t, gap_s = rest_t[a0 + 1 : a1], rest_s[b0 + 1 : b1]
        if gap_t and gap_s:
            pairs += [(a0 + 1 + i, b0 + 1 + j) for i, j in _align(gap_t, gap_s, lambda x: x.kind)]
    for i, j in pairs:
        paired[rest_t[i].name] = (rest_s[j], "structure")
    rows = []
    for t in targets:
        if t.name in skipped:
            rows.append(Row(t.name, t.kind, SKIPPED, t.params, shapes=t.shapes, how="skip:"))
        elif t.name in paired:
            s, how = paired[t.name]
            rows.append(_row(t, s, how, init.adapt_channels))
        else:
            rows.append(Row(t.name, t.kind, FRESH, t.params, shapes=t.shapes))
    used = {r.source for r in rows if r.status in INITIALISED}
    unused = [s.name for s in index.layers if s.name not in used]
    return TransferTable(
        index.label, rows, total_params, index.params, unused, list(uncovered), init.min_loaded
    )
