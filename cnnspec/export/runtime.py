"""Running a model in its own runtime: Keras, TensorFlow SavedModel, LiteRT (TFLite), ONNX Runtime.

Every runtime takes the same input — float32 raw pixels in [0, 255], channels-last, shape
``(N, H, W, C)`` — and returns class probabilities ``(N, classes)``: preprocessing is inside the
model, so a runtime never needs cnnspec to prepare inputs.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RunError
from ..modelio import ModelSource, find_model, load_run_model, model_meta


class Runtime(ABC):
    """A loaded model that maps images to class probabilities."""

    format: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def predict(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for a float32 batch of raw images in [0, 255]."""

    def input_shape(self) -> list[int] | None:
        """The model's ``[H, W, C]`` if the runtime knows it."""
        return None


class KerasRuntime(Runtime):
    format = "keras"

    def __init__(self, path: Path, model=None) -> None:
        super().__init__(path)
        if model is None:
            model, _, _ = load_run_model(path)
        self.model = model

    def predict(self, images: np.ndarray) -> np.ndarray:
        # model(x) rather than model.predict: no progress bar, no tf.data round trip for a batch
        return np.asarray(self.model(np.asarray(images, np.float32), training=False))

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.model.inputs[0].shape[1:]]


class SavedModelRuntime(Runtime):
    format = "savedmodel"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import tensorflow as tf

        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken SavedModel
            raise RunError(
                f"{path}: TensorFlow cannot load this SavedModel: {_first_line(exc)}"
            ) from None
        fn = getattr(self.loaded, "serve", None) or self.loaded.signatures.get("serving_default")
        if fn is None:
            raise RunError(
                f"{path}: SavedModel has no 'serve' endpoint or serving_default signature"
            )
        self.fn = fn

    def predict(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        x = tf.constant(np.asarray(images, np.float32))
        try:
            out = self.fn(x)
        except (TypeError, ValueError):  # a SavedModel exported with a list-of-one signature
            out = self.fn([x])
        if isinstance(out, dict):  # a signature returns {name: tensor}
            out = next(iter(out.values()))
        return np.asarray(out)


class TFLiteRuntime(Runtime):
    format = "tflite"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.interpreter = _tflite_interpreter(path)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self._batch = -1

    def predict(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self._batch = x.shape[0]
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"]))

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.input["shape"][1:]]


def _tflite_interpreter(path: Path):
    """The LiteRT interpreter (``ai-edge-litert``) if installed, else TensorFlow's own."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - deprecated in TF, still shipped in 2.21
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            return Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:
        raise RunError(f"{path}: not a loadable TFLite model: {_first_line(exc)}") from None


class OnnxRuntime(Runtime):
    format = "onnx"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RunError(
                "ONNX models need onnxruntime, which is not installed",
                hint="pip install 'cnnspec[onnx]'",
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise RunError(f"{path}: not a loadable ONNX model: {_first_line(exc)}") from None
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        return np.asarray(self.session.run(None, {self.input_name: x})[0])

    def input_shape(self) -> list[int] | None:
        dims = self.session.get_inputs()[0].shape[1:]
        return [int(d) for d in dims] if all(isinstance(d, int) for d in dims) else None


_RUNTIMES: dict[str, type[Runtime]] = {
    "keras": KerasRuntime,
    "savedmodel": SavedModelRuntime,
    "tflite": TFLiteRuntime,
    "onnx": OnnxRuntime,
}


def open_runtime(source: ModelSource) -> Runtime:
    """Load a located model with the runtime of its format."""
    return _RUNTIMES[source.format](source.path)


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


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut short (TF errors can embed whole tensors)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit] + " ..."
