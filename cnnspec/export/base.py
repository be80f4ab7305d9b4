"""What every export format provides: a writer, a recogniser and a runtime (its verifier).

A format is one module (``keras_format``, ``savedmodel_format``, ``tflite_format``,
``onnx_format``) that defines an :class:`ExportFormat`; :mod:`cnnspec.export.formats` lists them.
Adding a format touches one new module, the list, and nothing else: the CLI help, the messages
and the tests are derived from the registry.

Every runtime takes the same input — float32 raw pixels in [0, 255], channels-last, shape
``(N, H, W, C)`` — and returns the model's outputs (class probabilities ``(N, classes)``, a
mask's probabilities, sigmoid label vectors, standardised regression values): preprocessing is
inside the model, so a runtime never needs cnnspec to prepare inputs. A model with several
outputs (one trunk, several heads) answers ``{output name: array}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class Runtime(ABC):
    """A loaded model that maps images to its outputs."""

    format: str = ""
    #: The engine named in an export's metadata (``verification.runtime``).
    engine: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    @abstractmethod
    def predict_outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for a float32 batch of raw images in [0, 255], by output name (a
        one-output model's one entry is named as its runtime names it)."""

    def predict(self, images: np.ndarray) -> np.ndarray | dict[str, np.ndarray]:
        """The model's output (class probabilities...); ``{name: array}`` if it has several."""
        outs = self.predict_outputs(images)
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def input_shape(self) -> list[int] | None:
        """The model's ``[H, W, C]`` if the runtime knows it."""
        return None

    @classmethod
    def engine_name(cls) -> str:
        """The engine this runtime uses (some formats have a preferred and a fallback one)."""
        return cls.engine


#: ``write(keras_model, path, quantize)`` writes the export at ``path`` (a temporary name).
Writer = Callable[[Any, Path, "str | None"], None]
#: ``recognise(path) -> (is an earlier export of this format, why not)``.
Recogniser = Callable[[Path], "tuple[bool, str]"]


@dataclass(frozen=True)
class ExportFormat:
    """One export format: how it is written, recognised and run (verified)."""

    name: str
    #: The file suffix (``.tflite``); None for a format written as a folder (SavedModel).
    suffix: str | None
    write: Writer
    recognise: Recogniser
    runtime: type[Runtime]
    #: The ``--quantize`` modes the format accepts.
    quantize_modes: tuple[str, ...] = ()

    def default_name(self, stem: str) -> str:
        """``digits.tflite``, or ``digits_savedmodel`` for a folder format."""
        return stem + self.suffix if self.suffix else f"{stem}_{self.name}"


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut short (TF errors can embed whole tensors)."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[:limit] + " ..."


def is_file_with(path: Path, what: str) -> tuple[bool, str]:
    """(path is a regular file, why not): the start of every file format's recogniser."""
    if path.is_dir():
        return False, f"it is a folder, and a {what} export is a file"
    if not path.is_file():
        return False, "it is not a regular file"
    return True, ""


def has_magic(path: Path, what: str, offset: int, magic: bytes) -> tuple[bool, str]:
    """(path is a file with ``magic`` at ``offset``, why not)."""
    ok, why = is_file_with(path, what)
    if not ok:
        return ok, why
    with path.open("rb") as fh:
        head = fh.read(offset + len(magic))
    if head[offset:] != magic:
        return False, f"it is not a {what} model"
    return True, ""
