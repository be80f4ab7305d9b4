"""Where a trained network looks: explanation maps and the checks that they are honest.

Public API::

    explain_files(model, inputs, Request(...), out_dir) -> Report
        model: a run directory, .keras file or export (TFLite / ONNX / SavedModel: forward-only
        methods); inputs: image files, folders, or .npy arrays of the input shape (1D/3D).
    METHODS / get_method(name) / method_names(): the registry, one module per method
        (gradcam, occlusion, integrated_gradients, saliency, smoothgrad).
    open_explainable(model) -> Explainable; Method.explain(target, x, cls, Options) -> Attribution
    checks.randomised / checks.spearman / checks.deletion_curve: the sanity check and deletion curve.
"""

from __future__ import annotations

from .explainer import Report, Request, explain_files
from .registry import METHODS, Attribution, Method, Options, get_method, method_names
from .source import Explainable, open_explainable

__all__ = [
    "METHODS",
    "Attribution",
    "Explainable",
    "Method",
    "Options",
    "Report",
    "Request",
    "explain_files",
    "get_method",
    "method_names",
    "open_explainable",
]
