"""Training-memory estimate of a spec, before anything is built (pure Python, no TensorFlow).

What training one batch keeps alive at its peak, from the shapes and parameter counts the
graph compiler inferred:

* weights: every parameter, float32 (mixed precision keeps float32 variables);
* gradients: one float32 value per trainable parameter;
* optimizer state: slots per trainable parameter, by the recipe's optimizer (sgd without
  momentum 0, with momentum 1; rmsprop 1, +1 with momentum; adam/adamw 2, +1 with amsgrad);
* activations: the input batch and every layer's output (heads included), kept for
  backpropagation, at ``batch_size`` samples; 2 bytes a value under mixed precision, else 4.

Not covered: the framework itself (TensorFlow's runtime, a few hundred MB of host memory), the
input pipeline's buffers, temporary workspace of single ops (convolution algorithms, the
gradient being computed) and allocator fragmentation. ``tests/test_summary_memory.py`` compares
the estimate with the measured peak memory of real trainings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..shapes import prod

if TYPE_CHECKING:
    from .model import ModelSpec

FLOAT32 = 4
FLOAT16 = 2


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of training memory for one batch size."""

    batch_size: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    optimizer_slots: int
    mixed_precision: bool

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def _slots_adam(params: Any) -> int:
    return 3 if params.amsgrad else 2


def _slots_sgd(params: Any) -> int:
    return 1 if params.momentum > 0 else 0


def _slots_rmsprop(params: Any) -> int:
    return 2 if params.momentum > 0 else 1


#: Optimizer state per trainable parameter (float32 slots), by the recipe's optimizer kind.
SLOTS = {"sgd": _slots_sgd, "adam": _slots_adam, "adamw": _slots_adam, "rmsprop": _slots_rmsprop}


def optimizer_slots(spec: ModelSpec) -> int:
    """How many float32 values per trainable parameter the recipe's optimizer keeps."""
    opt = spec.train.optimizer
    return SLOTS[opt.kind](opt.params)


def activation_values(spec: ModelSpec) -> int:
    """Values per sample kept for backpropagation: the input and every layer's output."""
    return sum(prod(node.shape) for node in spec.graph.nodes.values())


def estimate_training_memory(
    spec: ModelSpec, batch_size: int, mixed_precision: bool | None = None
) -> MemoryEstimate:
    """Estimate the memory of training ``spec`` with batches of ``batch_size``.

    ``mixed_precision``: None follows the recipe (``on`` halves the activations; ``auto``
    counts as off, as on a CPU); True/False forces it.
    """
    if batch_size < 1:
        raise ValueError(f"the batch size must be at least 1, received {batch_size}")
    g = spec.graph
    mixed = spec.train.mixed_precision == "on" if mixed_precision is None else mixed_precision
    trainable = g.trainable_params + sum(
        n.params - n.non_trainable for n in g.nodes.values() if n.head
    )
    total = g.total_params + sum(n.params for n in g.nodes.values() if n.head)
    slots = optimizer_slots(spec)
    return MemoryEstimate(
        batch_size=batch_size,
        weights=total * FLOAT32,
        gradients=trainable * FLOAT32,
        optimizer=slots * trainable * FLOAT32,
        activations=batch_size * activation_values(spec) * (FLOAT16 if mixed else FLOAT32),
        optimizer_slots=slots,
        mixed_precision=mixed,
    )


def fmt_bytes(n: float) -> str:
    """``123456789`` -> ``117.7 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable
