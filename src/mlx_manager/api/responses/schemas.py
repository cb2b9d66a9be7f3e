"""OpenAI Responses API request (its items and tools: items.py; what it answers: output.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from mlx_manager.api.int64 import Count, Positive
from mlx_manager.api.request.normalize import CacheExtension, OpenAIEffort, SamplingExtensions
from mlx_manager.api.responses.items import InputItem, Tool
from mlx_manager.api.schema_base import NullsAsAbsent, Strict


class Reasoning(Strict):
    effort: OpenAIEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(NullsAsAbsent, SamplingExtensions, CacheExtension):
    model: str = Field(min_length=1)
    # A list first, so that a bad item is named by where it is (input.0.content), not as "not a string".
    input: list[InputItem] | str
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    max_output_tokens: Positive | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    max_reasoning_tokens: Count | None = Field(default=None, description="Reasoning budget (extension).")
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    # Accepted and recorded; they change nothing on a local server.
    user: str | None = None
    truncation: Literal["auto", "disabled"] | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    include: list[str] | None = None
    background: bool | None = None
