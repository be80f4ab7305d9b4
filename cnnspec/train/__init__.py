"""Training: ``train(spec, run_dir=..., resume=...) -> RunResult`` (see trainer.py).

Imports Keras/TensorFlow when a function is called, never at package import.
"""

from __future__ import annotations

from typing import Any


def train(spec: Any, **kwargs: Any):
    """Train a ModelSpec by its ``train:`` recipe (see ``cnnspec.train.trainer.train``)."""
    from .trainer import train as _train

    return _train(spec, **kwargs)


__all__ = ["train"]
