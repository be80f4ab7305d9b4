"""The explanation methods, one module each, registered here by name.

A method maps one input (no batch axis) and a class index to an :class:`Attribution`: a map of
the input's spatial shape (``H x W`` for images, ``L`` for 1D, ``D x H x W`` for 3D) whose
largest value is where the evidence for the class is strongest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import RunError, did_you_mean

#: Bounds on the amounts a user controls, checked before any work.
MAX_STEPS = 1024
MAX_SAMPLES = 256
MAX_OCCLUSIONS = 100_000


@dataclass(frozen=True)
class Options:
    """Every method's settings (each method reads its own)."""

    layer: str | None = None  #: Grad-CAM: layer or spec block name (default: last spatial)
    patch: int | None = None  #: occlusion: window size (default: 1/8 of the smallest side)
    stride: int | None = None  #: occlusion: window step (default: patch // 2)
    fill: float | None = None  #: occlusion / deletion: value put in (default: the input's mean)
    steps: int = 32  #: integrated gradients: Riemann steps
    baseline: float = 0.0  #: integrated gradients: constant baseline input (0 = black)
    samples: int = 25  #: SmoothGrad: noisy copies
    noise: float = 0.15  #: SmoothGrad: noise std as a fraction of the input's value range

    def check(self) -> Options:
        """Refuse out-of-range settings with one line naming the option."""
        bounds = {
            "--steps": (self.steps, 1, MAX_STEPS),
            "--samples": (self.samples, 1, MAX_SAMPLES),
            "--patch": (self.patch or 1, 1, 10_000),
            "--stride": (self.stride or 1, 1, 10_000),
        }
        for opt, (value, lo, hi) in bounds.items():
            if not lo <= value <= hi:
                raise RunError(f"{opt} must be in [{lo}, {hi}], received {value}")
        if not 0 <= self.noise <= 1:
            raise RunError(f"--noise must be in [0, 1], received {self.noise}")
        for name, value in (("--fill", self.fill), ("--baseline", self.baseline)):
            if value is not None and not np.isfinite(value):
                raise RunError(f"{name} must be a finite number, received {value}")
        return self


@dataclass
class Attribution:
    """One map and what the method measured while making it."""

    map: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def peak(self) -> list[int]:
        """Where the map is largest (first such position), as indices per spatial axis."""
        return [int(i) for i in np.unravel_index(int(np.argmax(self.map)), self.map.shape)]


@dataclass(frozen=True)
class Method:
    """A registered explanation method."""

    name: str
    explain: Callable[[Any, np.ndarray, int, Options], Attribution]
    needs_gradients: bool
    summary: str


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """A method by name, or RunError listing the registered ones."""
    from . import methods  # noqa: F401 - fills the registry

    if name not in METHODS:
        hint = did_you_mean(name, list(METHODS)) or "methods: " + ", ".join(METHODS)
        raise RunError(f"--method {name}: unknown explanation method", hint=hint)
    return METHODS[name]


def method_names() -> list[str]:
    from . import methods  # noqa: F401

    return list(METHODS)
