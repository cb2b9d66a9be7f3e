"""The tables. Each change to them comes with a migration in migrations/versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


class StoredResponse(SQLModel, table=True):
    """A Responses API result kept for `previous_response_id`: the conversation so far and what was answered."""

    __tablename__ = "responses"

    id: str = Field(primary_key=True)
    created_at: int = Field(index=True)
    model: str
    # Input items of the whole conversation up to this response (earlier turns included), in Responses format.
    input_items: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    instructions: str | None = None
    # The full response object as returned to the client.
    response: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
