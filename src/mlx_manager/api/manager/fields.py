"""What every /api request body and parameter shares, so bad input is a 400 naming the field, never a 500 from
SQLite: integers within its 64-bit range, finite floats, and PATCH bodies where null only clears nullable columns."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from mlx_manager.api import schema_base

# SQLite stores integers as signed 64-bit: anything larger fails in the driver (OverflowError).
from mlx_manager.int64 import INT64_MAX, INT64_MIN, Count, Int64, PositiveInt

# Row ids: SQLite hands out 1, 2, ... so anything else is no row's id.
RowId = PositiveInt

__all__ = ["INT64_MAX", "INT64_MIN", "Count", "Int64", "PartialUpdate", "PositiveInt", "RowId", "Strict"]


class Strict(schema_base.Strict):
    """The shared Strict base (unknown fields refused), and NaN and infinities refused too: stdlib JSON parses
    them, and no column wants them."""

    model_config = ConfigDict(allow_inf_nan=False)


def _drop_null(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """In the OpenAPI, a field that may not be null is not nullable (clients and the fuzz tests see the truth)."""
    clearable: frozenset[str] = getattr(cls, "clearable", frozenset())
    for name, prop in schema.get("properties", {}).items():
        options = prop.get("anyOf")
        if name in clearable or not options or {"type": "null"} not in options:
            continue
        rest = [o for o in options if o != {"type": "null"}]
        del prop["anyOf"]
        prop.pop("default", None)
        if len(rest) == 1:
            prop.update(rest[0])
        else:
            prop["anyOf"] = rest


class PartialUpdate(Strict):
    """A PATCH body: only the fields sent change. Null is accepted only for the fields in `clearable` (nullable
    columns: null clears them); for any other field it is a 400 naming it."""

    model_config = ConfigDict(json_schema_extra=_drop_null)
    clearable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*")
    @classmethod
    def _null_only_where_clearable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.clearable:
            raise ValueError("must not be null; leave it out to keep the current value")
        return value
