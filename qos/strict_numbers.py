"""`StrictNumbers`: a pydantic base whose number fields refuse booleans.

pydantic's lax mode reads `true` as 1 for an int or float field, so a settings file or
policy saying `maxPercent: {cpu: true}` would mean 1 %. Full strict mode would also refuse
"online" for an enum and a list for a tuple, which YAML cannot avoid; this refuses only the
bool-for-number case, for every model built on it.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, model_validator

__all__ = ["StrictNumbers"]


def _numeric(annotation: Any) -> bool:
    """True when the type holds only numbers (int, float, or a union of them with None)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _numeric(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_numeric(a) for a in args)
    return annotation in (int, float)


class StrictNumbers(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        for name, field in cls.model_fields.items():
            for key in {name, field.alias or name}:
                value = data.get(key)
                if isinstance(value, bool) and _numeric(field.annotation):
                    raise ValueError(f"{key}: {str(value).lower()} is not a number")
        return data
