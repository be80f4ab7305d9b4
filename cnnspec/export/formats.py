"""The export formats, by name: the one list every accepted-format message is derived from."""

from __future__ import annotations

from ..errors import RunError
from . import keras_format, onnx_format, savedmodel_format, tflite_format
from .base import ExportFormat

#: Every export format, in the order help and messages list them.
REGISTRY: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        keras_format.FORMAT,
        savedmodel_format.FORMAT,
        tflite_format.FORMAT,
        onnx_format.FORMAT,
    )
}
NAMES: tuple[str, ...] = tuple(REGISTRY)
#: Every ``--quantize`` mode some format accepts.
QUANTIZE_MODES: tuple[str, ...] = tuple(
    dict.fromkeys(m for f in REGISTRY.values() for m in f.quantize_modes)
)


def get(name: str) -> ExportFormat:
    """The format called ``name``; a RunError listing the formats otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise RunError(
            f"unknown export format '{name}'", hint=f"use one of {', '.join(NAMES)}"
        ) from None
