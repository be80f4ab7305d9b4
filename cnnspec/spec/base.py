"""Shared Pydantic base: strict, typo-proof models."""

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from .types import FieldValueError, strict_scalar


class StrictModel(BaseModel):
    """Every spec model: unknown keys are errors, values are validated on assignment too.

    No silent coercion of scalars: ``'yes'`` is not a bool, ``true`` is not a number, and
    ``.nan`` / ``.inf`` are not numbers (``allow_inf_nan=False``).
    """

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False
    )

    @model_validator(mode="before")
    @classmethod
    def _no_lax_scalars(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias if field.alias in data else name
                if key in data:
                    try:
                        strict_scalar(field.annotation, data[key])
                    except ValueError as exc:
                        raise FieldValueError(key, str(exc)) from None
        return data
