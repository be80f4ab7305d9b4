"""Exporting a trained model: Keras, SavedModel, TFLite (optionally quantised) and ONNX.

``export_model`` writes the inference model (aux heads already dropped by ``cnnspec train``,
preprocessing inside, every task output out: one tensor, or ``{name: tensor}`` for several) plus ``<name>.meta.json`` beside it, then verifies
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
from .outputs import OutputInfo, outputs_of
from .verify import N_SAMPLES, OutputCheck, sample_inputs, verify_export, verify_outputs

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
    "OutputCheck",
    "OutputInfo",
    "Runtime",
    "default_destination",
    "export_model",
    "outputs_of",
    "plan_export",
    "sample_inputs",
    "verify_export",
    "verify_outputs",
]
