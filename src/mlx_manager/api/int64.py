"""Integer fields of the model-serving APIs are signed 64-bit, as OpenAI's and Anthropic's own schemas have them:
a larger number (2**63, 10**30) is a 400 naming the field, never an overflow deeper down (float maths, numpy, a
remote backend's JSON parser). Use these types without Field bounds of their own: pydantic keeps only one set."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from mlx_manager.api.manager.fields import INT64_MAX, INT64_MIN

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
Positive = Annotated[int, Field(ge=1, le=INT64_MAX)]

__all__ = ["INT64_MAX", "INT64_MIN", "Count", "Int64", "Positive"]
