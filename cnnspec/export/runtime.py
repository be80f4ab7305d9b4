"""Running any model source in the runtime of its format (see :mod:`cnnspec.export.base`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import RunError
from ..modelio import ModelSource, find_model, model_meta
from .base import Runtime, first_line
from .formats import REGISTRY
from .keras_format import KerasRuntime
from .onnx_format import OnnxRuntime
from .savedmodel_format import SavedModelRuntime
from .tflite_format import TFLiteRuntime

__all__ = [
    "KerasRuntime",
    "OnnxRuntime",
    "Runtime",
    "SavedModelRuntime",
    "TFLiteRuntime",
    "first_line",
    "open_model",
    "open_runtime",
]


def open_runtime(source: ModelSource) -> Runtime:
    """Load a located model with the runtime of its format."""
    return REGISTRY[source.format].runtime(source.path)


def open_model(path: str | Path) -> tuple[Runtime, dict[str, Any]]:
    """Load any model source (run dir, .keras, SavedModel, .tflite, .onnx) and its metadata."""
    source = find_model(path)
    runtime = open_runtime(source)
    if source.meta_path is None and isinstance(runtime, KerasRuntime):
        return runtime, model_meta(source, runtime.model)
    meta = model_meta(source)
    shape = runtime.input_shape()
    if shape is not None and shape != list(meta["input_shape"]):
        raise RunError(
            f"{source.path}: the model takes {shape} inputs but its metadata says "
            f"{meta['input_shape']}"
        )
    return runtime, meta
