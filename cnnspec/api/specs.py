"""``cnnspec.load`` and ``Spec``: a checked spec with its shapes, parameters, MACs and memory
estimate, inferred without TensorFlow (nothing here imports it)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

Overrides = Mapping[str, Any] | Iterable[str] | None


def override_texts(overrides: Overrides) -> list[str]:
    """``{"train.epochs": 5}`` -> ``["train.epochs=5"]`` (values as JSON, which YAML reads back
    unchanged); strings ``"key=value"`` pass as they are, as on the command line."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]
    return [str(text) for text in overrides]


class Spec:
    """A spec that passed every check: its layers' shapes, parameters and MACs are known.

    Made by :func:`cnnspec.load`; nothing is built (no TensorFlow) until :func:`cnnspec.build`
    or :func:`cnnspec.train` is given it.
    """

    def __init__(self, model_spec: Any, document: Any, overrides: list[str], scale: str | None):
        self.model_spec = model_spec  # the validated cnnspec.spec.ModelSpec (advanced use)
        self.document, self.overrides, self.scale = document, overrides, scale

    # --- what the spec is ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.model_spec.name

    @property
    def path(self) -> Path | None:
        """The spec file, or None for a spec given as YAML text."""
        file = self.document.file
        return None if file.startswith("<") else Path(file)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model_spec.graph.input_shape)

    @property
    def output_shape(self) -> tuple[int, ...]:
        g = self.model_spec.graph
        return tuple(g.nodes[g.output].shape)

    @property
    def params(self) -> int:
        """Parameters of the built model (auxiliary heads, used only in training, left out)."""
        return self.model_spec.graph.total_params

    @property
    def trainable_params(self) -> int:
        return self.model_spec.graph.trainable_params

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of one sample."""
        return self.model_spec.graph.total_macs

    @property
    def layers(self) -> list[dict[str, Any]]:
        """One row per layer (name, kind, notation, shape, params, MACs, receptive field, ...),
        as ``cnnspec summary --json`` prints them: ``pandas.DataFrame(spec.layers)`` works."""
        from .summary import summary_rows

        return summary_rows(self.model_spec)

    def memory(self, batch: int = 32) -> Any:
        """The training-memory estimate at ``batch`` samples (a ``MemoryEstimate``: ``.total``
        bytes and its parts: weights, gradients, optimizer, activations)."""
        from ..errors import RunError
        from ..spec.memory import estimate_training_memory

        if not isinstance(batch, int) or batch < 1:
            raise RunError(f"memory(batch=...) must be a positive integer, received {batch!r}")
        return estimate_training_memory(self.model_spec, batch)

    def summary(self, batch: int | None = None) -> str:
        """The ``cnnspec summary`` table as text (``batch``: with the training-memory line)."""
        from .summary import summary_text

        return summary_text(self.model_spec, self.title, batch)

    def to_dict(self, batch: int | None = None) -> dict[str, Any]:
        """What ``cnnspec summary --json`` prints: totals and every layer."""
        from .summary import summary_dict

        return summary_dict(self.model_spec, batch)

    def with_set(self, set: Overrides = None, scale: str | None = None) -> Spec:  # noqa: A002
        """A new Spec: this one with more overrides (and another ``scale``, if given)."""
        from ..spec.loader import from_document

        more = [*self.overrides, *override_texts(set)]
        scale = self.scale if scale is None else scale
        return Spec(from_document(self.document, more, scale), self.document, more, scale)

    # --- display -----------------------------------------------------------------------------

    @property
    def title(self) -> str:
        return f"{self.name}  ({self.document.file})"

    def __repr__(self) -> str:
        from ..shapes import fmt

        return (
            f"<Spec {self.name}: {self.params:,} params, {self.macs:,} MACs, "
            f"{fmt(self.input_shape)} -> {fmt(self.output_shape)}>"
        )

    def _repr_html_(self) -> str:  # Jupyter's rich display
        from .summary import summary_html

        return summary_html(self.model_spec, self.title)


def load(
    source: str | os.PathLike | Spec, *, set: Overrides = None, scale: str | None = None
) -> Spec:  # noqa: A002
    """Load and check a spec: a file path, or YAML text (any string with a line break).

    ``set``: overrides as ``{"train.epochs": 5}`` (or ``["train.epochs=5"]``, as ``--set``);
    ``scale``: a member of the spec's ``scales:`` (``--scale``). Raises ``cnnspec.SpecError``
    with every problem found (``.problems``), located in the file. Never imports TensorFlow.
    """
    from .. import yamlio
    from ..errors import SpecError
    from ..spec.loader import from_document

    if isinstance(source, Spec):
        return source.with_set(set, scale) if set or scale else source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source):
        document = yamlio.load(Path(source))
    elif isinstance(source, str):
        document = yamlio.loads(source, "<string>")
    else:
        raise SpecError.single(
            f"cnnspec.load takes a spec file or YAML text, received {type(source).__name__}",
            hint="pass a path such as 'specs/lenet5.yaml' or the YAML itself",
        )
    overrides = override_texts(set)
    return Spec(from_document(document, overrides, scale), document, overrides, scale)
