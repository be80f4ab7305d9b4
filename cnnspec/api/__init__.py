"""The Python API (``import cnnspec``): the commands as functions, one path with the CLI.

Public names (re-exported at the package top; everything else in cnnspec is internal)::

    load(source, *, set=None, scale=None) -> Spec       a spec file or YAML text, checked
    Spec: .name .params .macs .memory(batch) .summary() .layers .to_dict() .with_set(...)
    build(spec, *, heads=False) -> keras.Model
    train(spec, data=None, *, out=None, epochs=None, ...) -> Run (.path .metrics .history .model)
    evaluate(model, data=None, *, split=None, top_k=3, confusion_png=None)
        -> Evaluation (classification, segmentation) | TaskEvaluation (label-table outputs)
    predict(model, inputs, *, top_k=3, out=None, tile=False) -> one record per image:
        Prediction | OutputsPrediction (every output) | MaskPrediction / ArrayMask
    export(model, format="keras", output=None, *, quantize=None, ...) -> ExportResult
    explain(model, inputs, *, method=None, target_class=None, top=1, head=None, ...) -> Report
    SpecError, RunError (cnnspec.errors): what every function raises for bad input

Importing this (and loading a spec) never imports TensorFlow: ``build``, ``train``,
``evaluate``, ``predict``, ``export`` and ``explain`` import it when called, after their cheap checks.
"""

from __future__ import annotations

from .models import build, evaluate, explain, export, predict
from .runs import Run, train
from .specs import Spec, load

__all__ = ["Run", "Spec", "build", "evaluate", "explain", "export", "load", "predict", "train"]
