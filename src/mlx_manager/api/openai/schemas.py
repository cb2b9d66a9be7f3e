"""OpenAI request and response schemas. Unknown request fields are rejected, never silently ignored."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlx_manager.api.int64 import INT64_MAX, Count, Int64, Positive
from mlx_manager.api.model_cards import SamplingDefault
from mlx_manager.api.request.normalize import CacheExtension, OpenAIEffort, SamplingExtensions
from mlx_manager.api.schema_base import NullsAsAbsent, Strict


class StreamOptions(Strict):
    include_usage: bool = False


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class FunctionCallParam(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    # A JSON string in OpenAI's API; some clients send the object itself, which is what templates want anyway.
    arguments: str | dict[str, Any] | None = None


class ToolCallParam(BaseModel):
    """An earlier call in an assistant message: typed, so a wrong-typed entry is a 400 naming it."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallParam


class ChatMessage(BaseModel):
    # Extra keys (e.g. `reasoning_content` echoed back by clients) pass through to the chat template.
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None


class ResponseFormat(Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class SamplingFields(NullsAsAbsent, SamplingExtensions, CacheExtension):
    """Fields shared by chat and text completions."""

    model: str = Field(min_length=1)
    # Sampling values left out (None) come from the profile, the model's generation_config.json, the server's
    # [generation] settings, then OpenAI's defaults (temperature 1, no filters).
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: Int64 | None = None
    stop: str | list[str] | None = None
    n: Positive = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    ignore_eos: bool = Field(default=False, description="Keep generating past end-of-sequence (vLLM extension).")
    priority: Int64 = Field(default=0, description="Scheduling priority (vLLM extension): lower runs sooner.")

    @model_validator(mode="after")
    def _check_stream_options(self) -> SamplingFields:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    @field_validator("logit_bias")
    @classmethod
    def _check_bias(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key, value in (bias or {}).items():
            # At most 19 digits: a longer id is no token's, and int() of thousands of digits raises.
            digits = key.removeprefix("-")
            if not (key.isascii() and digits.isdigit() and len(digits) <= 19 and abs(int(key)) <= INT64_MAX):
                raise ValueError(f"keys must be token ids, got {key[:40]!r}")
            if not -100 <= value <= 100:
                raise ValueError(f"values must be between -100 and 100, got {value}")
        return bias

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Positive | None = None
    max_completion_tokens: Positive | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    reasoning_effort: OpenAIEffort | None = None
    max_reasoning_tokens: Count | None = Field(default=None, description="Reasoning budget (extension).")
    continue_final_message: bool = Field(
        default=False, description="Continue the last message, the assistant's, instead of replying (vLLM extension)."
    )
    metadata: dict[str, str] | None = None
    store: bool | None = None

    @model_validator(mode="after")
    def _check_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        return self


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: Positive | None = 16
    logprobs: int | None = Field(default=None, ge=0, le=20)
    echo: bool = False
    suffix: str | None = None
    best_of: Positive | None = None


# --- responses ---------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut] | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class FunctionCall(BaseModel):
    name: str
    arguments: str


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str | None
    logprobs: ChoiceLogprobs | None = None


class CompletionEnvelope(BaseModel):
    """What a chat or text completion, or a chunk of one, carries around its choices: each names its own
    `object` and choice type (the field order stays as OpenAI writes it)."""

    id: str
    object: str
    created: int
    model: str
    choices: Sequence[BaseModel]
    usage: UsageOut | None = None
    system_fingerprint: str | None = None


class ChatCompletion(CompletionEnvelope):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: UsageOut


class DeltaFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(CompletionEnvelope):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionLogprobs(BaseModel):
    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(CompletionEnvelope):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class DistributedCard(BaseModel):
    """A model sharded over several processes or machines (engine/distributed): how, and what it serves at once."""

    strategy: str  # tensor or pipeline
    backend: str  # ring or jaccl
    ranks: int
    hosts: list[str]
    # Requests it runs at once; the others wait their turn (lower priority first, then arrival, within the queue
    # time limit).
    concurrent_requests: int = 1
    limits: list[str] = Field(default_factory=list)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mlx-manager"
    # Extensions (vLLM and LM Studio clients read these): tokens of context, whether it is in memory now,
    # and the sampling values a request that leaves them out gets, with where each comes from.
    context_length: int | None = None
    max_model_len: int | None = None
    loaded: bool = False
    sampling_defaults: dict[str, SamplingDefault] = Field(default_factory=dict)
    vision: bool = Field(default=False, description="Takes images in chat messages (extension).")
    task: str = Field(
        default="generate", description="What it does (extension): generate, embed, score, transcribe or speak."
    )
    distributed: DistributedCard | None = Field(default=None, description="Sharded over ranks (extension).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
