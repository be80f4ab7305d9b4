"""The `train:` recipe (placeholder until the training issue lands)."""

from .base import StrictModel


class TrainSpec(StrictModel):
    """How to train a spec."""
