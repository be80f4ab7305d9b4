"""The Keras format: a ``.keras`` archive, verified by reloading it with Keras (safe mode)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from .base import ExportFormat, Runtime, is_file_with

if TYPE_CHECKING:
    import numpy as np


def write(model, path: Path, quantize: str | None) -> None:
    """Save the inference model as a ``.keras`` archive."""
    model.save(path)


def recognise(path: Path) -> tuple[bool, str]:
    """A zip holding only what Keras writes (config.json, metadata.json, weights, assets/)."""
    ok, why = is_file_with(path, "keras")
    if not ok:
        return ok, why
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
    except (OSError, zipfile.BadZipFile):
        return False, "it is not a .keras archive (not a zip file)"
    own = {"config.json", "metadata.json", "model.weights.h5"}
    if "config.json" not in names or any(
        n not in own and not n.startswith("assets/") for n in names
    ):
        return False, "it is a zip file but not a Keras model archive"
    return True, ""


class KerasRuntime(Runtime):
    format = "keras"
    engine = "keras"

    def __init__(self, path: Path, model=None) -> None:
        super().__init__(path)
        if model is None:
            from .outputs import load_export_source

            model, _, _ = load_export_source(path)  # every output its metadata names
        self.model = model

    def predict_outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        import numpy as np

        from .outputs import named_outputs

        # model(x) rather than model.predict: no progress bar, no tf.data round trip for a batch
        out = self.model(np.asarray(images, np.float32), training=False)
        if isinstance(out, dict):
            return {k: np.asarray(v) for k, v in out.items()}
        return {next(iter(named_outputs(self.model))): np.asarray(out)}

    def input_shape(self) -> list[int]:
        return [int(d) for d in self.model.inputs[0].shape[1:]]


FORMAT = ExportFormat("keras", ".keras", write, recognise, KerasRuntime)
