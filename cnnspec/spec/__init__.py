"""The spec language: pure Pydantic models and shape inference. Never imports TensorFlow."""

from .graph import Graph, Node
from .loader import REGISTRY, apply_overrides, load_spec, loads_spec
from .model import HeadSpec, ModelSpec

__all__ = [
    "REGISTRY",
    "Graph",
    "HeadSpec",
    "ModelSpec",
    "Node",
    "apply_overrides",
    "load_spec",
    "loads_spec",
]
