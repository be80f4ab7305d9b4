"""Verifying an export: run it in its own runtime on sample inputs, compare with Keras."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RunError
from .base import ExportFormat, first_line
from .keras_format import KerasRuntime
from .outputs import OutputInfo

if TYPE_CHECKING:
    import numpy as np

N_SAMPLES = 16


def sample_inputs(input_shape: list[int], n: int = N_SAMPLES, seed: int = 0) -> np.ndarray:
    """Deterministic inputs in [0, 255]: noise, flat images and smooth gradients.

    A model of another rank (1D signals, 3D volumes) gets noise and the two flat inputs.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 255.0, size=(n, *input_shape)).astype(np.float32)
    if n >= 4:
        x[0] = 0.0
        x[1] = 255.0
    if n >= 4 and len(input_shape) == 3:
        h, w, _ = input_shape
        x[2] = np.linspace(0.0, 255.0, w, dtype=np.float32)[None, :, None]
        x[3] = np.linspace(0.0, 255.0, h, dtype=np.float32)[:, None, None]
    return x


@dataclass(frozen=True)
class OutputCheck:
    """How one output of an export matched the Keras model on the sample inputs."""

    name: str
    task: str
    shape: tuple[int, ...]  # of the compared batch
    max_abs_diff: float
    #: The share of samples (pixels of a mask, labels of a multilabel vector) the export
    #: decides as Keras does: the top class, the labels at or above the threshold; None for a
    #: regression output (its values are compared by max_abs_diff alone).
    agreement: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "shape": list(self.shape),
                "max_abs_diff": self.max_abs_diff, "agreement": self.agreement}  # fmt: skip


def top_class(p: np.ndarray, info: OutputInfo) -> np.ndarray:
    """The decided class of every sample (pixel): argmax, or p >= 0.5 for one sigmoid unit."""
    return p.argmax(axis=-1) if p.shape[-1] > 1 else p[..., 0] >= 0.5


def above_threshold(p: np.ndarray, info: OutputInfo) -> np.ndarray:
    """Every label's decision: probability at or above the output's threshold."""
    return p >= (0.5 if info.threshold is None else info.threshold)


#: What an export must decide as Keras does, per task (None: values only, max_abs_diff).
DECISIONS: dict[str, Callable[[np.ndarray, OutputInfo], np.ndarray] | None] = {
    "classification": top_class,
    "segmentation": top_class,
    "multilabel": above_threshold,
    "regression": None,
}


def verify_outputs(
    model, path: Path, fmt: ExportFormat, input_shape: list[int], n: int,
    infos: tuple[OutputInfo, ...] | None = None,
) -> tuple[OutputCheck, ...]:  # fmt: skip
    """Run the export in its own runtime on sample inputs and compare every output with the
    Keras model's: max absolute difference (dense outputs, a segmentation map N x H x W x C,
    over every value) and the share of decisions that agree (``DECISIONS``)."""
    import numpy as np

    x = sample_inputs(list(input_shape), n)
    expected = KerasRuntime(path, model).predict_outputs(x)
    try:
        got = fmt.runtime(path).predict_outputs(x)
    except RunError:
        raise
    except Exception as exc:  # noqa: BLE001 - any runtime failure means the export is unusable
        raise RunError(
            f"export verification failed: the {fmt.name} runtime cannot run the export: "
            f"{first_line(exc)}"
        ) from None
    if len(expected) == len(got) == 1:  # one output: each runtime names it its own way
        got = {next(iter(expected)): next(iter(got.values()))}
    if set(got) != set(expected):
        raise RunError(
            f"export verification failed: the {fmt.name} export answers "
            f"{', '.join(sorted(got))}, Keras {', '.join(sorted(expected))}"
        )
    checks = []
    for name, info in described(expected, infos):
        want, have = np.asarray(expected[name]), np.asarray(got[name])
        if have.shape != want.shape:
            raise RunError(
                f"export verification failed: {fmt.name} output '{info.name}' has shape "
                f"{have.shape}, Keras {want.shape}"
            )
        diff = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
        decide = DECISIONS.get(info.task)
        agree = None if decide is None else float((decide(have, info) == decide(want, info)).mean())
        checks.append(OutputCheck(info.name, info.task, tuple(want.shape), diff, agree))
    return tuple(checks)


def described(expected: dict[str, Any], infos: tuple[OutputInfo, ...] | None):
    """(output name, its OutputInfo) in the metadata's order; outputs it does not describe
    (a .keras file without metadata) are compared as classification outputs."""
    infos = infos or ()
    if len(expected) == 1:
        name = next(iter(expected))
        return [(name, infos[0] if infos else OutputInfo(name))]
    known = {i.name: i for i in infos if i.name in expected}
    return [*known.items(), *((n, OutputInfo(n)) for n in expected if n not in known)]


def verify_export(
    model, path: Path, fmt: ExportFormat, input_shape: list[int], n: int
) -> tuple[float, float]:
    """(max abs difference, top-1 agreement) of a one-output export (``verify_outputs``)."""
    check = verify_outputs(model, path, fmt, input_shape, n)[0]
    return check.max_abs_diff, check.agreement
