"""Input sizes that fit a net whose merges (a U-Net's concat, a residual add) got mismatched
sizes: pure shape inference tried at nearby inputs, for the hint of that problem.

A U-Net with p=same convolutions and ``depth`` 2x2 poolings needs an input divisible by
2^depth; a valid-convolution U-Net fits other sizes (572, 188, ...). Neither rule is written
down here: the nearest sizes whose shapes infer cleanly are the answer for every net.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

#: Sizes tried on each side of the given one (each try is one shape inference), and the
#: time all tries may take (a big net's inference is tens of ms; a mismatch no input size
#: fixes, such as channels, tries them all).
REACH = 48
BUDGET_S = 1.5
#: The words of the merge problems this hint is for (cnnspec/shapes.py).
MERGE_WORDS = ("needs the other dimensions to match", "needs matching shapes")


def is_merge_problem(message: str) -> bool:
    return any(words in message for words in MERGE_WORDS)


def fitting_inputs(spec: Any, limit: int = 2) -> list[tuple[int, ...]]:
    """Up to ``limit`` nearest inputs (same channels; every spatial side moved by the same
    amount) whose shapes infer without a problem; [] when none within ``REACH``."""
    from ..errors import SpecError
    from .graph import compile_graph

    shape = tuple(spec.input)
    if len(shape) < 2:
        return []
    found: list[tuple[int, ...]] = []
    deadline = time.monotonic() + BUDGET_S
    for step in range(1, REACH + 1):
        if time.monotonic() > deadline:
            return found
        for delta in (-step, step):
            spatial = tuple(d + delta for d in shape[:-1])
            if min(spatial) < 1:
                continue
            candidate = spec.model_copy(update={"input": (*spatial, shape[-1])})
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    compile_graph(candidate)
            except SpecError:
                continue
            except Exception:  # noqa: BLE001 - a hint must never break the error it helps
                return found
            found.append((*spatial, shape[-1]))
            if len(found) >= limit:
                return found
    return found


def hint(spec: Any) -> str:
    """'input sizes that fit this net: 28x28x1 or 32x32x1', or '' when none is near."""
    sizes = fitting_inputs(spec)
    if not sizes:
        return ""
    text = " or ".join("x".join(map(str, s)) for s in sorted(sizes))
    return (
        f"input {'x'.join(map(str, spec.input))} does not fit this net's merges; "
        f"input sizes that fit: {text}"
    )


def with_hint(spec: Any, problems: list) -> list:
    """``problems`` with the fitting input sizes added to each merge problem's hint (once)."""
    from dataclasses import replace

    merges = [p for p in problems if is_merge_problem(p.message)]
    text = hint(spec) if merges else ""
    if not text:
        return problems
    return [replace(p, hint=f"{text}; or {p.hint}") if p in merges else p for p in problems]
