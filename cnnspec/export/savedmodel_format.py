"""The TensorFlow SavedModel format: a folder, verified with ``tf.saved_model.load``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RunError
from .base import ExportFormat, Runtime, first_line

if TYPE_CHECKING:
    import numpy as np

#: What an export writes into a SavedModel folder (anything else is a user's file).
ENTRIES = {
    "saved_model.pb",
    "saved_model.pbtxt",
    "fingerprint.pb",
    "keras_metadata.pb",
    "variables",
    "assets",
    "assets.extra",
}


def write(model, path: Path, quantize: str | None) -> None:
    """Export the model's ``serve`` endpoint as a SavedModel folder."""
    model.export(str(path), format="tf_saved_model", verbose=False)


def recognise(path: Path) -> tuple[bool, str]:
    """A folder holding only what a SavedModel export writes."""
    if not path.is_dir():
        return False, "it is a file, and a SavedModel is a folder"
    if not (path / "saved_model.pb").is_file() or not (path / "variables").is_dir():
        return False, "it is a folder but not a SavedModel (no saved_model.pb and variables/)"
    foreign = sorted(e.name for e in path.iterdir() if e.name not in ENTRIES)
    foreign += sorted(
        f"variables/{e.name}"
        for e in (path / "variables").iterdir()
        if not (e.is_file() and e.name.startswith("variables."))
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return False, f"the SavedModel folder also holds {shown}, which an export never writes"
    return True, ""


class SavedModelRuntime(Runtime):
    format = "savedmodel"
    engine = "tf.saved_model"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import tensorflow as tf

        try:
            self.loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # noqa: BLE001 - TF raises many types for a broken SavedModel
            raise RunError(
                f"{path}: TensorFlow cannot load this SavedModel: {first_line(exc)}"
            ) from None
        fn = getattr(self.loaded, "serve", None) or self.loaded.signatures.get("serving_default")
        if fn is None:
            raise RunError(
                f"{path}: SavedModel has no 'serve' endpoint or serving_default signature"
            )
        self.fn = fn

    def predict_outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import numpy as np
        import tensorflow as tf

        x = tf.constant(np.asarray(images, np.float32))
        try:
            out = self.fn(x)
        except (TypeError, ValueError):  # a SavedModel exported with a list-of-one signature
            out = self.fn([x])
        if isinstance(out, dict):  # a signature (or a dict-output model) returns {name: tensor}
            return {str(k): np.asarray(v) for k, v in out.items()}
        if isinstance(out, list | tuple):
            return {f"output_{i}": np.asarray(v) for i, v in enumerate(out)}
        return {"output_0": np.asarray(out)}


FORMAT = ExportFormat("savedmodel", None, write, recognise, SavedModelRuntime)
