"""Spec -> Keras. Imports Keras (the spec package never does)."""

from . import backbone  # noqa: F401  (registers the backbone builder)
from .custom import GlobalL2Pooling, L2Pooling, LocalResponseNormalization
from .layers import apply
from .model import build_model, inference_model

__all__ = [
    "GlobalL2Pooling",
    "L2Pooling",
    "LocalResponseNormalization",
    "apply",
    "build_model",
    "inference_model",
]
