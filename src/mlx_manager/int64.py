"""Signed 64-bit integers, the one range every integer field keeps to: SQLite stores integers so, and OpenAI's and
Anthropic's schemas declare theirs so. A value past it is a 400 naming the field, never an overflow deeper down
(the SQLite driver, float maths, numpy, a remote backend's JSON parser). Use these types without Field bounds of
their own: pydantic keeps only one set."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
PositiveInt = Annotated[int, Field(ge=1, le=INT64_MAX)]
