"""The ONNX format: converted with tf2onnx (through Keras), verified with ONNX Runtime."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from ..versions import install_hint
from .base import ExportFormat, Runtime, first_line, has_magic

if TYPE_CHECKING:
    import numpy as np

NEEDS = "tf2onnx, onnx and onnxruntime"


def write(model, path: Path, quantize: str | None) -> None:
    """Convert with tf2onnx after refusing, by name, the layers it cannot convert."""
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        raise RunError(f"ONNX export needs {NEEDS}", hint=install_hint("onnx")) from None
    import numpy as np

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    refuse_unconvertible(model)
    # Keras exports to ONNX only a model that has been called once; a freshly loaded one hasn't.
    model(np.zeros((1, *(int(d) for d in model.inputs[0].shape[1:])), np.float32), training=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras' numpy-2 patch of tf2onnx warns about np.object
        model.export(str(path), format="onnx", verbose=False)


def refuse_unconvertible(model) -> None:
    """One line, naming the layer, for what tf2onnx cannot convert (before it fails obscurely).

    - keras.layers.Normalization (a model saved before cnnspec built ``normalize`` with its own
      layer): its statistics become graph inputs that nothing feeds;
    - a grouped convolution (``groups`` > 1): Keras runs it as an XLA call;
    - exact GELU: TensorFlow computes it with Erfc, which tf2onnx lacks.
    """
    import keras

    stack = list(model.layers)
    while stack:
        layer = stack.pop()
        stack.extend(getattr(layer, "layers", []))
        if type(layer) is keras.layers.Normalization:
            raise RunError(
                f"layer '{layer.name}' is a plain Keras Normalization (a model built before "
                "cnnspec's own normalize layer), which tf2onnx cannot convert",
                hint="rebuild the model from its spec with this cnnspec (cnnspec build or "
                "train), or export with --format savedmodel or tflite",
            )
        if getattr(layer, "groups", 1) > 1:
            raise RunError(
                f"layer '{layer.name}' is a grouped convolution (groups={layer.groups}), which "
                "tf2onnx cannot convert (Keras runs it as an XLA call)",
                hint="export with --format savedmodel or tflite",
            )
        if getattr(layer, "activation", None) is keras.activations.gelu:
            raise RunError(
                f"layer '{layer.name}' uses the exact GELU activation, which tf2onnx cannot "
                "convert (TensorFlow computes it with Erfc)",
                hint="export with --format savedmodel or tflite",
            )


def recognise(path: Path) -> tuple[bool, str]:
    """An ONNX ModelProto starts with field 1 (ir_version, a varint): tag byte 0x08."""
    return has_magic(path, "onnx", 0, b"\x08")


class OnnxRuntime(Runtime):
    format = "onnx"
    engine = "onnxruntime"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise RunError(
                "ONNX models need onnxruntime, which is not installed", hint=install_hint("onnx")
            ) from None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise RunError(f"{path}: not a loadable ONNX model: {first_line(exc)}") from None
        self.input_name = self.session.get_inputs()[0].name

    def predict_outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import numpy as np

        x = np.asarray(images, np.float32)
        names = [o.name for o in self.session.get_outputs()]  # a dict-output model's keys
        got = self.session.run(names, {self.input_name: x})
        return {n: np.asarray(v) for n, v in zip(names, got, strict=True)}

    def input_shape(self) -> list[int] | None:
        dims = self.session.get_inputs()[0].shape[1:]
        return [int(d) for d in dims] if all(isinstance(d, int) for d in dims) else None


FORMAT = ExportFormat("onnx", ".onnx", write, recognise, OnnxRuntime)
