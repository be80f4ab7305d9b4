"""``cnnspec.build``, ``cnnspec.evaluate``, ``cnnspec.predict`` and ``cnnspec.export``: the
commands of the same names, as functions. TensorFlow is imported when they are called, after
the checks that need none (so a refusal costs milliseconds, as on the command line)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .specs import Spec, load


def model_path(model: Any) -> Path:
    """A model source as a path: a ``Run``, a run folder, a ``.keras`` file or an export."""
    from ..errors import RunError

    path = getattr(model, "path", model)  # a Run
    if not isinstance(path, str | os.PathLike):
        raise RunError(
            f"a model must be a Run, a run folder, a .keras file or an export; "
            f"received {type(model).__name__}",
            hint="for a keras.Model of your own, call model.predict / model.evaluate directly",
        )
    return Path(path)


def build(spec: Spec | str | os.PathLike, *, heads: bool = False) -> Any:
    """The ``keras.Model`` of a spec (a Spec, a spec file or YAML text), untrained or with its
    ``init:`` weights; ``heads=True`` keeps the auxiliary heads (the training model).

    The layers are built-in Keras layers (plus cnnspec's own few, registered serialisable), so
    the model trains with your own ``compile``/``fit`` and saves and reloads as any other.
    """
    spec = load(spec)
    from ..tfquiet import import_tensorflow

    import_tensorflow()
    from ..build import build_model

    model = build_model(spec.model_spec, heads=heads)
    if spec.model_spec.init is not None:
        from ..init import apply

        apply(model, spec.model_spec)  # RunError under init.min_loaded
    return model


def evaluate(
    model: Any,
    data: Any = None,
    *,
    split: str | None = None,
    top_k: int = 3,
    confusion_png: str | os.PathLike | None = None,
) -> Any:
    """Score a model (a ``Run``, run folder, ``.keras`` or export) on labelled data: a source
    as on the command line (default: the data it was trained on) or arrays ``(x, y)`` /
    a ``tf.data.Dataset`` / a ``PyDataset``. ``split``: test | val | train | all (default:
    test of a named source, all of data given in Python). Returns, by the model's outputs:

    - one classification output (class indices) or a segmentation output: an ``Evaluation``
      (``.accuracy``, ``.per_class``, ``.confusion``; segmentation: ``.extra`` mean_iou, dice);
    - multilabel, regression, a class column of a label table, several heads: a
      ``TaskEvaluation`` (``.scores``: the metrics.json names, a head's prefixed, e.g. ``f1``,
      ``map``, ``mae``, ``count_mae``; ``.outputs``: per output its scores and report, per
      label / per target / per class; ``.pictures``: confusion and predicted-vs-true PNGs
      when ``confusion_png`` is given). Both have ``.to_dict()`` (the CLI's ``--json``)."""
    from ..errors import RunError
    from ..evaluate import evaluate_model
    from ..modelio import check_model_source
    from ..outpaths import check_output

    path = model_path(model)
    if split is None:
        split = "test" if data is None or isinstance(data, str | os.PathLike) else "all"
    if isinstance(data, os.PathLike):
        data = str(data)
    png = None if confusion_png is None else check_output(Path(confusion_png))
    _, meta = check_model_source(path)  # archive limits, code, metadata digest: before TF
    trained_on = str((meta or {}).get("data", ""))
    if data is None and trained_on.endswith(" in memory"):  # the memory source's label
        raise RunError(
            f"{path} was trained on {trained_on}: they are not saved with the run",
            hint="pass the data to evaluate: data=(x, y), or --data with a source on disk",
        )
    from ..tfquiet import import_tensorflow

    import_tensorflow()
    return evaluate_model(path, data, split=split, k=top_k, confusion_png=png)


def predict(
    model: Any, inputs: Any, *, top_k: int = 3, out: Any = None, tile: bool = False
) -> list[Any]:
    """Predict images: image files and folders (as ``cnnspec predict``), or an array of images
    (N, H, W[, C]) in [0, 255] (uint8) or [0, 1] (float), resized to the model's input as
    training does. One record per image, by the model's outputs (``.to_dict()``: what the
    CLI's ``--json`` prints):

    - one classification output: a ``Prediction`` (``.top``: (class, probability) pairs);
    - multilabel, regression, a class column, several heads: an ``OutputsPrediction``
      (``.outputs``: output name -> multilabel ``{"labels", "probabilities"}`` (labels at or
      above the threshold), regression ``{"values": {target: value}}`` in the data's units,
      a class head ``{"top": [...]}``); files also write ``predictions.csv``/``.json`` to ``out``;
    - segmentation: files give a ``MaskPrediction`` (mask PNG and overlay written into ``out``;
      ``tile``: large images in blended tiles); an array gives an ``ArrayMask`` (``.mask``:
      class indices at the model's input size, ``.pixels``: each class's share).
    """
    import numpy as np

    from ..predict import predict_files

    path = model_path(model)
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if isinstance(inputs, list | tuple) and all(isinstance(i, str | os.PathLike) for i in inputs):
        return predict_files(path, list(inputs), top_k, out=out, tile=tile)
    return predict_arrays(path, np.asarray(inputs), top_k)


def predict_arrays(path: Path, images: Any, k: int) -> list[Any]:
    """``predict`` of an array of images (the same pixel rule as training data in memory),
    by the array predictor of the model's CLI predictor (``ARRAY_PREDICTORS``)."""
    import numpy as np

    from ..data.arrays import check_arrays
    from ..errors import RunError
    from ..modelio import check_model_source
    from ..tasks.saved import plans_of

    if k < 1:
        raise RunError(f"top_k must be at least 1, received {k}")
    if images.ndim not in (3, 4):
        raise RunError(f"inputs: an array of images (N, H, W[, C]); received shape {images.shape}")
    x, _, _, _ = check_arrays(images, np.zeros(len(images), np.int32), None, "inputs")
    _, meta = check_model_source(path)
    plans = plans_of(meta)
    from ..tfquiet import import_tensorflow

    import_tensorflow()
    from ..data.images import convert

    predictor = plans[0].task.predictor(plans)  # what the CLI would run on files
    chunks = array_predictor(predictor)(path, plans, k)
    out: list[Any] = []
    for i in range(0, len(x), 256):  # converted a chunk at a time
        chunk = np.asarray(convert(x[i : i + 256], chunks.input_shape), np.float32)
        out += chunks(chunk, [f"inputs[{i + j}]" for j in range(len(chunk))])
    return out


def array_predictor(predictor: Any) -> Any:
    """The array counterpart of a CLI predictor: ``f(path, plans, k)`` -> ``chunks`` (called
    with a float32 batch and its names; ``.input_shape``)."""
    from ..predict import predict_classes, predict_masks_run

    table = {predict_classes: ClassChunks, predict_masks_run: MaskChunks}
    return table.get(predictor, OutputChunks)


class ClassChunks:
    """One classification output: the top-k classes (``Prediction``), as before tasks."""

    def __init__(self, path: Path, plans: list[Any], k: int) -> None:
        from ..export.runtime import open_model

        self.runtime, self.meta = open_model(path)
        self.input_shape, self.k = self.meta["input_shape"], k

    def __call__(self, chunk: Any, names: list[str]) -> list[Any]:
        from ..predict import Prediction, predict_probabilities, top_k

        tops = top_k(predict_probabilities(self.runtime, chunk), self.meta["class_names"], self.k)
        return [Prediction(n, t) for n, t in zip(names, tops, strict=True)]


class OutputChunks(ClassChunks):
    """Label-table outputs (multilabel, regression, several heads): ``OutputsPrediction``."""

    def __init__(self, path: Path, plans: list[Any], k: int) -> None:
        from ..tasks.saved import open_outputs

        self.runtime, self.meta = open_outputs(path, plans)
        self.plans, self.input_shape, self.k = plans, self.meta["input_shape"], k

    def __call__(self, chunk: Any, names: list[str]) -> list[Any]:
        from ..tasks.outputs_io import records_of

        return records_of(self.runtime, self.plans, chunk, names, self.k)


class MaskChunks(ClassChunks):
    """A segmentation output: each image's mask of class indices at the input size."""

    def __call__(self, chunk: Any, names: list[str]) -> list[Any]:
        from ..predict import predict_probabilities
        from ..tasks.outputs_io import ArrayMask
        from ..tasks.segmentation import labels_of
        from ..tasks.segmentation_io import threshold_of

        masks = labels_of(predict_probabilities(self.runtime, chunk), threshold_of(self.meta))
        return [ArrayMask.of(n, m, self.meta["class_names"]) for n, m in zip(names, masks,
                                                                          strict=True)]  # fmt: skip


def explain(
    model: Any,
    inputs: Any,
    *,
    method: str | list[str] | None = None,
    target_class: str | int | None = None,
    top: int = 1,
    head: str | None = None,
    layer: str | None = None,
    sanity: bool = False,
    deletion: bool = False,
    out: str | os.PathLike | None = None,
) -> Any:
    """Where a model looks (as ``cnnspec explain``): image files, folders and ``.npy`` arrays,
    or an array of images (N, H, W[, C]) in [0, 255] (uint8) or [0, 1] (float), resized to
    the model's input as training does. ``method``: gradcam, occlusion, integrated_gradients,
    saliency, smoothgrad (default: every one the model allows); ``target_class`` (a name or
    an index) or the ``top`` classes by the output's task; ``head``: a head of a model with
    several outputs; ``sanity``/``deletion``: the checks. ``out``: a folder for overlays,
    ``.npy`` maps and the contact sheet (default: nothing written).

    Returns a ``Report``: ``.inputs``, one per input, each with ``.maps`` (per method and class:
    ``method``, ``class``, its score — ``probability``, ``value`` or ``pixel_share`` by task —,
    ``peak`` and ``array``, the map at the input's size); ``.to_dict()``: the CLI's ``--json``.
    """
    import numpy as np

    from ..data.arrays import check_arrays
    from ..errors import RunError
    from ..explain import Options, Request
    from ..explain.explainer import check_count, explain_arrays, explain_files, split_methods
    from ..modelio import check_model_source
    from ..outpaths import check_output

    path = model_path(model)
    wanted = None if target_class is None else str(target_class)
    req = Request(split_methods(method), wanted, top, Options(layer=layer), sanity, deletion=deletion,
                  write=out is not None, output=head)  # fmt: skip
    folder = None if out is None else check_output(Path(out), kind="dir")
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if isinstance(inputs, list | tuple) and all(isinstance(i, str | os.PathLike) for i in inputs):
        return explain_files(path, list(inputs), req, folder)
    from ..data.images import convert
    from ..tfquiet import import_tensorflow

    images = np.asarray(inputs)
    if images.ndim not in (3, 4):
        raise RunError(f"inputs: an array of images (N, H, W[, C]); received shape {images.shape}")
    check_count(len(images))  # before TensorFlow
    x, _, _, _ = check_arrays(images, np.zeros(len(images), np.int32), None, "inputs")
    _, meta = check_model_source(path)  # archive limits, code, metadata digest: before TF
    import_tensorflow()
    x = np.asarray(convert(x, (meta or {}).get("input_shape")), np.float32)
    return explain_arrays(path, x, req, folder)


def export(
    model: Any,
    format: str = "keras",  # noqa: A002 - the command's option name
    output: str | os.PathLike | None = None,
    *,
    quantize: str | None = None,
    overwrite: bool = False,
    tolerance: float | None = None,
) -> Any:
    """Export a trained model (a ``Run``, run folder or ``.keras``) to ``format`` (keras,
    savedmodel, tflite, onnx), verified against Keras in its own runtime and written atomically
    (default: ``<run>/export/<name>.<ext>``). Returns an ``ExportResult`` (``.path``,
    ``.max_abs_diff``, ``.top1_agreement``, ...)."""
    from ..export import export_model

    return export_model(
        model_path(model),
        str(format).lower(),
        None if output is None else Path(output),
        quantize=quantize,
        overwrite=overwrite,
        tolerance=tolerance,
    )
