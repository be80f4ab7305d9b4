"""Occlusion (Zeiler & Fergus 2014): slide a patch of a fill value over the input.

The map is the drop in the explained class's probability when a patch covers a position,
averaged over the patches that cover each position. The occluded copies go through the model in
batches (one call per chunk of copies, not one per patch), so it runs on exports too.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import RunError
from .registry import MAX_OCCLUSIONS, Attribution, Method, Options, register
from .source import Explainable


def starts(n: int, patch: int, stride: int) -> list[int]:
    """Window starts along one axis; the last window always ends at the edge."""
    last = max(n - patch, 0)
    out = list(range(0, last + 1, stride))
    return out if out[-1] == last else [*out, last]


def windows(spatial: tuple[int, ...], patch: int, stride: int) -> list[tuple[slice, ...]]:
    """Every patch position as a tuple of slices, one per spatial axis."""
    axes = [starts(n, patch, stride) for n in spatial]
    return [tuple(slice(s, s + patch) for s in combo) for combo in itertools.product(*axes)]


def default_patch(spatial: tuple[int, ...]) -> int:
    return max(1, round(min(spatial) / 8))


def occlusion(target: Explainable, x: np.ndarray, cls: int, opts: Options) -> Attribution:
    """The occlusion map of one input for class ``cls``."""
    spatial = x.shape[:-1]
    patch = opts.patch or default_patch(spatial)
    stride = opts.stride or max(1, patch // 2)
    if patch > min(spatial):
        raise RunError(f"--patch {patch} is larger than the input's {list(spatial)}")
    count = int(np.prod([len(starts(n, patch, stride)) for n in spatial]))
    if count > MAX_OCCLUSIONS:
        raise RunError(
            f"occlusion would run {count:,} copies of the input (limit {MAX_OCCLUSIONS:,})",
            hint="raise --stride or --patch",
        )
    fill = float(x.mean()) if opts.fill is None else float(opts.fill)
    wins = windows(spatial, patch, stride)
    base = float(target.forward(x[None])[0, cls])
    drops = np.empty(len(wins), np.float32)
    step = target.chunk()
    for i in range(0, len(wins), step):
        part = wins[i : i + step]
        batch = np.repeat(x[None], len(part), axis=0)
        for j, w in enumerate(part):
            batch[(j, *w)] = fill
        drops[i : i + len(part)] = base - target.forward(batch)[:, cls]
    total = np.zeros(spatial, np.float32)
    covered = np.zeros(spatial, np.float32)
    for w, d in zip(wins, drops, strict=True):
        total[w] += d
        covered[w] += 1
    return Attribution(
        total / np.maximum(covered, 1),
        {"patch": patch, "stride": stride, "fill": fill, "copies": len(wins), "p": base},
    )


register(
    Method("occlusion", occlusion, False, "probability drop under a sliding patch (forward only)")
)
