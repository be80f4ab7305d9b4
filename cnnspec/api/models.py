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
    test of a named source, all of data given in Python). Returns an ``Evaluation``
    (``.accuracy``, ``.per_class``, ``.confusion``, ``.to_dict()``)."""
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
    """The top-k classes of images: image files and folders (as ``cnnspec predict``), or an
    array of images (N, H, W[, C]) in [0, 255] (uint8) or [0, 1] (float), resized to the
    model's input as training does. Returns one ``Prediction`` (``.top``: (class,
    probability) pairs, best first) per image. A segmentation model writes mask PNGs and
    overlays into ``out`` (``tile``: large images in blended tiles) and returns one
    ``MaskPrediction`` per image file."""
    import numpy as np

    from ..predict import predict_files

    path = model_path(model)
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    if isinstance(inputs, list | tuple) and all(isinstance(i, str | os.PathLike) for i in inputs):
        return predict_files(path, list(inputs), top_k, out=out, tile=tile)
    return predict_arrays(path, np.asarray(inputs), top_k)


def predict_arrays(path: Path, images: Any, k: int) -> list[Any]:
    """``predict`` of an array of images (the same pixel rule as training data in memory)."""
    import numpy as np

    from ..data.arrays import check_arrays
    from ..errors import RunError
    from ..modelio import check_model_source
    from ..predict import Prediction, predict_probabilities, top_k

    if k < 1:
        raise RunError(f"top_k must be at least 1, received {k}")
    if images.ndim not in (3, 4):
        raise RunError(f"inputs: an array of images (N, H, W[, C]); received shape {images.shape}")
    x, _, _, _ = check_arrays(images, np.zeros(len(images), np.int32), None, "inputs")
    check_model_source(path)
    from ..tfquiet import import_tensorflow

    import_tensorflow()
    from ..data.images import convert
    from ..export.runtime import open_model

    runtime, meta = open_model(path)
    out: list[Prediction] = []
    for i in range(0, len(x), 256):  # converted a chunk at a time
        chunk = np.asarray(convert(x[i : i + 256], meta["input_shape"]), np.float32)
        probs = predict_probabilities(runtime, chunk)
        tops = top_k(probs, meta["class_names"], k)
        out += [Prediction(f"inputs[{i + j}]", t) for j, t in enumerate(tops)]
    return out


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
