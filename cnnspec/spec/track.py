"""``train.track``: where a run is tracked besides its run directory (pure Pydantic).

    train:
      track: {mlflow: {uri: http://mlflow.example:5000, experiment: lenet5}}

Off by default: a run is sent to a server only when its recipe (or ``--track URI``) says so.
"""

from __future__ import annotations

from pydantic import Field

from .base import StrictModel


class MlflowTrackSpec(StrictModel):
    """An MLflow tracking server (or a local ``file:`` / ``sqlite:`` store)."""

    uri: str = Field(
        min_length=1,
        description="tracking URI: http://host:5000 (a shared mlflow server), "
        "sqlite:///mlflow.db or a folder",
    )
    experiment: str | None = Field(
        None, min_length=1, description="experiment name (default: the spec's name)"
    )


class TrackSpec(StrictModel):
    """Trackers to log the run to (one so far: mlflow)."""

    mlflow: MlflowTrackSpec | None = None
