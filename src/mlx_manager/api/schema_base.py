"""The base request models every API shares: unknown fields are a 400 naming them, never silently ignored."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class Strict(BaseModel):
    """A request body (or part of one) that refuses fields it does not know."""

    model_config = ConfigDict(extra="forbid")


class NullsAsAbsent(Strict):
    @model_validator(mode="before")
    @classmethod
    def _nulls_mean_defaults(cls, data: Any) -> Any:
        # Clients such as LiteLLM send explicit nulls for unset fields; OpenAI treats them as absent.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data
