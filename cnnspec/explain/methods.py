"""Importing this module registers every method (one module per method)."""

from . import gradcam, integrated, occlusion, saliency  # noqa: F401
