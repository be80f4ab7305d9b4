"""The TFLite (LiteRT) format: a flatbuffer of builtin ops, optionally quantised, verified with
the LiteRT interpreter (``ai-edge-litert``) or TensorFlow's own."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from ..tfquiet import TFLITE_NOISE, filtered_stderr
from .base import ExportFormat, Runtime, first_line, has_magic

if TYPE_CHECKING:
    import numpy as np


def write(model, path: Path, quantize: str | None) -> None:
    """Convert through a SavedModel with builtin ops only (``dynamic``/``float16`` quantised)."""
    import tensorflow as tf

    # The intermediate SavedModel goes beside the export: the same disk, and a full one is
    # reported for the export's path (not for /tmp).
    with tempfile.TemporaryDirectory(
        prefix=f"{path.name}.", suffix=".partial", dir=path.parent
    ) as saved:
        model.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        # Builtin ops only: the file then runs in the plain LiteRT runtime, no Flex delegate.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            data = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises ConverterError and others
            text = str(exc).strip().splitlines()
            raise RunError(
                f"TFLite conversion failed: {text[0] if text else type(exc).__name__}",
                hint="a layer may have no TFLite builtin op; try --format onnx or savedmodel",
            ) from None
    path.write_bytes(data)


def recognise(path: Path) -> tuple[bool, str]:
    """A TFLite flatbuffer has the identifier "TFL3" at byte 4."""
    return has_magic(path, "tflite", 4, b"TFL3")


def interpreter(path: Path):
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
        raise RunError(f"{path}: not a loadable TFLite model: {first_line(exc)}") from None


def output_indices(interp) -> dict[str, int]:
    """{output name: tensor index}. The flatbuffer's output order is not the model's and its
    tensor names are generated (``StatefulPartitionedCall:1``): several outputs are named by
    the serving signature, which carries the model's output names."""
    details = interp.get_output_details()
    if len(details) > 1:
        signatures = interp.get_signature_list()
        if len(signatures) == 1:
            runner = interp.get_signature_runner(next(iter(signatures)))
            named = {str(n): int(d["index"]) for n, d in runner.get_output_details().items()}
            if len(named) == len(details):
                return named
    return {str(d["name"]): int(d["index"]) for d in details}


class TFLiteRuntime(Runtime):
    format = "tflite"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.interpreter = interpreter(path)
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = output_indices(self.interpreter)
        self._batch = -1

    @classmethod
    def engine_name(cls) -> str:
        try:
            import ai_edge_litert  # noqa: F401

            return "ai_edge_litert"
        except ImportError:
            return "tf.lite"

    def predict_outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import numpy as np

        x = np.asarray(images, np.float32)
        if x.shape[0] != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            # LiteRT announces its XNNPACK delegate from C++ on the first allocation.
            with filtered_stderr(TFLITE_NOISE):
                self.interpreter.allocate_tensors()
            self._batch = x.shape[0]
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return {n: np.array(self.interpreter.get_tensor(i)) for n, i in self.outputs.items()}

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.input["shape"][1:]]


FORMAT = ExportFormat(
    "tflite", ".tflite", write, recognise, TFLiteRuntime, quantize_modes=("dynamic", "float16")
)
