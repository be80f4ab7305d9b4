"""Shared Pydantic base: strict, typo-proof models."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Every spec model: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)
