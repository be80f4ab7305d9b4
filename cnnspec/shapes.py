"""Pure shape, parameter and MAC arithmetic (no Pydantic, no Keras).

Shapes exclude the batch axis and are channels-last: ``(H, W, C)`` for images, ``(L, C)`` for
sequences, ``(D, H, W, C)`` for volumes, ``(N,)`` for flat vectors.

The output-size rule of the lecture: ``floor((n + 2p - K) / s) + 1`` for a K×K filter with
stride s on an input of size n with p zeros on each side. With dilation d the filter spans
``d(K - 1) + 1`` inputs. ``same`` padding gives ``ceil(n / s)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]


#: Largest size of one dimension of a tensor (TensorFlow indexes many kernels with int32).
MAX_DIM = 2**31 - 1
#: Most elements in one tensor of one sample (an activation, or one layer's weights): with
#: float32 that is 8 GiB, beyond what one accelerator holds for a single layer.
MAX_ELEMENTS = 2**31 - 1
#: Most parameters of a whole model (16 GiB of float32 weights).
MAX_PARAMS = 2**32


class ShapeError(ValueError):
    """A shape rule is broken. ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def _dim(d: int | None) -> str:
    if d is None:
        return "?"
    if abs(d) <= 10**15:
        return str(d)
    digits = str(abs(d))  # a huge size reads as 1.0e300, not as 300 digits
    return f"{'-' if d < 0 else ''}{digits[0]}.{digits[1]}e{len(digits) - 1}"


def fmt(shape: Sequence[int | None]) -> str:
    """``(32, 32, 3)`` -> ``32x32x3``."""
    return "x".join(_dim(d) for d in shape) if shape else "scalar"


def expand(values: Sequence[int], rank: int, what: str) -> tuple[int, ...]:
    """Broadcast a per-direction value to ``rank`` directions (``3`` -> ``(3, 3)``)."""
    values = tuple(values)
    if len(values) == 1:
        return values * rank
    if len(values) != rank:
        raise ShapeError(
            f"{what} has {len(values)} directions but the input has {rank} spatial dimensions, "
            f"received {what}={fmt(values)}",
            f"give one value or {rank}",
        )
    return values


def pads_for(padding: str | Sequence, rank: int) -> Pads | str:
    """Normalise a padding value to ``((before, after), ...)`` per direction, or 'same'/'valid'."""
    if isinstance(padding, str):
        return padding
    items = tuple(padding)
    if items and all(isinstance(x, (tuple, list)) for x in items):
        pairs = tuple((int(a), int(b)) for a, b in items)
        if len(pairs) == 1:
            pairs = pairs * rank
        if len(pairs) != rank:
            raise ShapeError(
                f"padding has {len(pairs)} directions but the input has {rank}, received p={list(items)}",
                f"give {rank} [before, after] pairs",
            )
        return pairs
    per_dir = expand(items, rank, "p")
    return tuple((int(x), int(x)) for x in per_dir)


def spatial_out(size: int, k: int, s: int, d: int, pad: tuple[int, int] | str) -> int:
    """Output size along one direction (the lecture's rule, generalised to dilation and same)."""
    span = d * (k - 1) + 1
    if pad == "same":
        return math.ceil(size / s)
    before, after = (0, 0) if pad == "valid" else pad
    return (size + before + after - span) // s + 1


def window_out(
    in_spatial: Sequence[int],
    K: Sequence[int],
    s: Sequence[int],
    d: Sequence[int],
    padding: str | Sequence,
    kind: str,
) -> tuple[int, ...]:
    """Output spatial size of a sliding window (conv or pool); raises ShapeError if it does not fit."""
    rank = len(in_spatial)
    K = expand(K, rank, "K")
    s = expand(s, rank, "s")
    d = expand(d, rank, "d")
    pads = pads_for(padding, rank)
    out = []
    for i, n in enumerate(in_spatial):
        pad = pads if isinstance(pads, str) else pads[i]
        span = d[i] * (K[i] - 1) + 1
        if pad != "same":
            total = n + (0 if pad == "valid" else pad[0] + pad[1])
            if span > total:
                p_txt = "valid" if pad == "valid" else (pad[0] if pad[0] == pad[1] else list(pad))
                raise ShapeError(
                    f"K={fmt(K)} is larger than its {fmt(in_spatial)} input (p={p_txt})",
                    f"use p=same or p={(span - n + 1) // 2}, or a smaller K",
                )
        out.append(spatial_out(n, K[i], s[i], d[i], pad))
    return tuple(out)


def same_pads(in_spatial: Sequence[int], K: Sequence[int], s: Sequence[int]) -> Pads:
    """The explicit (before, after) zero padding that TensorFlow's 'same' applies."""
    pads = []
    for n, k, st in zip(in_spatial, K, s, strict=True):
        out = math.ceil(n / st)
        total = max((out - 1) * st + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def prod(values: Sequence[int]) -> int:
    return math.prod(values)


def _same_rank(shapes: Sequence[Shape], op: str) -> int:
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise ShapeError(
            f"{op} needs inputs of the same rank, received {', '.join(fmt(s) for s in shapes)}",
            "flatten or reshape one input",
        )
    return rank


def broadcast(shapes: Sequence[Shape], op: str) -> Shape:
    """The shape of an element-wise merge; dims must match or be 1 (numpy broadcasting)."""
    _same_rank(shapes, op)
    out = []
    for dims in zip(*shapes, strict=True):
        big = {d for d in dims if d != 1}
        if len(big) > 1:
            raise ShapeError(
                f"{op} needs matching shapes, received {', '.join(fmt(s) for s in shapes)}",
                "make the shapes equal (e.g. a 1x1 conv projection, or concat instead)",
            )
        out.append(big.pop() if big else 1)
    return tuple(out)


def concat(shapes: Sequence[Shape], axis: int) -> Shape:
    """The shape of a concatenation along ``axis``."""
    rank = _same_rank(shapes, "concat")
    ax = axis if axis >= 0 else rank + axis
    if not 0 <= ax < rank:
        raise ShapeError(f"concat axis is out of range for rank {rank}, received axis={axis}")
    for i in range(rank):
        if i != ax and len({s[i] for s in shapes}) > 1:
            raise ShapeError(
                f"concat along axis {axis} needs the other dimensions to match, "
                f"received {', '.join(fmt(s) for s in shapes)}",
                "use p=same in the branches so spatial sizes agree",
            )
    out = list(shapes[0])
    out[ax] = sum(s[ax] for s in shapes)
    return tuple(out)


def check_size(
    shape: Shape, params: int, total_params: int, what: str = "the output would be"
) -> None:
    """Refuse sizes Keras cannot build: see :data:`MAX_DIM`, :data:`MAX_ELEMENTS`,
    :data:`MAX_PARAMS` (``total_params`` counts the model so far, this layer included)."""
    if max(shape, default=0) > MAX_DIM:
        raise ShapeError(
            f"{what} {fmt(shape)}, a dimension larger than {MAX_DIM:,}",
            "use fewer units / kernels (n_K) or a smaller input",
        )
    if prod(shape) > MAX_ELEMENTS:
        raise ShapeError(
            f"{what} {fmt(shape)} = {prod(shape):,} values per sample, more than {MAX_ELEMENTS:,}",
            "downsample earlier (s=2, pooling) or use a smaller input",
        )
    if params > MAX_ELEMENTS:
        raise ShapeError(
            f"the layer would have {params:,} parameters, more than {MAX_ELEMENTS:,}",
            "use fewer units / kernels (n_K), or pool before a dense layer",
        )
    if total_params > MAX_PARAMS:
        raise ShapeError(
            f"the model would reach {total_params:,} parameters here, more than {MAX_PARAMS:,}",
            "use fewer units / kernels (n_K), or pool before a dense layer",
        )
