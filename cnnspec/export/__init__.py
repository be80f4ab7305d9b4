"""Exporting a trained model: Keras, SavedModel, TFLite (optionally quantised) and ONNX.

``export_model`` writes the inference model (aux heads already dropped by ``cnnspec train``,
preprocessing inside, class probabilities out) plus ``<name>.meta.json`` beside it, then verifies
the export by loading it with its own runtime and comparing its outputs with the Keras model on
sample inputs. The formats are a registry (:mod:`cnnspec.export.formats`), one module each.
"""

from .base import ExportFormat, Runtime
from .exporter import (
    TOLERANCE,
    TOLERANCE_QUANTISED,
    ExportPlan,
    ExportResult,
    default_destination,
    export_model,
    plan_export,
)
from .formats import NAMES, QUANTIZE_MODES, REGISTRY
from .verify import N_SAMPLES, sample_inputs, verify_export

__all__ = [
    "NAMES",
    "N_SAMPLES",
    "QUANTIZE_MODES",
    "REGISTRY",
    "TOLERANCE",
    "TOLERANCE_QUANTISED",
    "ExportFormat",
    "ExportPlan",
    "ExportResult",
    "Runtime",
    "default_destination",
    "export_model",
    "plan_export",
    "sample_inputs",
    "verify_export",
]
