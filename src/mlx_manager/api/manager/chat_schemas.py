"""Bodies of /api/chats: chats, their options and messages. Times are Unix epoch seconds, durations milliseconds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from mlx_manager.api.manager.fields import Count, PartialUpdate, PositiveInt, Strict
from mlx_manager.api.manager.schemas import SystemPrompt, Temperature, TopP

Title = Annotated[str, Field(min_length=1, max_length=200)]
ModelName = Annotated[str, Field(max_length=512)]
# A reply can be long (a big max_tokens); the request body limit caps it anyway.
Text = Annotated[str, Field(max_length=4_000_000)]
ImageUrl = Annotated[str, Field(max_length=64 << 20, pattern=r"^data:image/")]
Millis = Annotated[float, Field(ge=0, le=1e12)]
Role = Literal["user", "assistant"]
Status = Literal["complete", "streaming", "interrupted", "stopped", "error"]
STATUS_HELP = (
    "complete; streaming (being written: read back later, the stream was cut by a reload or a crash);"
    " interrupted (the page went away mid-stream); stopped (by the user); error (see `error`)."
)


class ChatOptions(Strict):
    """What the chat sends with each request, beyond the model; unset ones come from the profile or model."""

    system_prompt: SystemPrompt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveInt | None = None


class ToolCallRecord(Strict):
    id: str | None = Field(default=None, max_length=256)
    name: str = Field(max_length=256)
    arguments: str = Field(default="", max_length=1_000_000)


class ChatCreate(Strict):
    title: Title = "New chat"
    model: ModelName = ""
    options: ChatOptions = Field(default_factory=ChatOptions)


class ChatUpdate(PartialUpdate):
    """Only the fields sent change."""

    title: Title | None = None
    model: ModelName | None = None
    options: ChatOptions | None = None


class ChatPublic(BaseModel):
    id: int
    title: str
    model: str
    options: ChatOptions
    created_at: float
    updated_at: float
    message_count: int


class ChatSummary(ChatPublic):
    snippet: str | None = Field(default=None, description="With `q`: the matching text of a message.")


class ChatPage(BaseModel):
    items: list[ChatSummary]
    total: int = Field(description="Chats matching, all pages together.")
    limit: int
    offset: int


class MessageCreate(Strict):
    role: Role
    content: Text = ""
    images: list[ImageUrl] = Field(default_factory=list, max_length=16, description="data: URLs")
    reasoning: Text | None = None
    tool_calls: list[ToolCallRecord] | None = Field(default=None, max_length=128)
    status: Status = Field(default="complete", description=STATUS_HELP)
    error: str | None = Field(default=None, max_length=10_000)
    model: ModelName | None = Field(default=None, description="What answered (assistant replies).")
    params: ChatOptions = Field(default_factory=ChatOptions, description="What the reply was asked with.")
    finish_reason: str | None = Field(default=None, max_length=64, description="length: cut at max tokens.")
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    ttft_ms: Millis | None = Field(default=None, description="From the request to the first token.")
    decode_ms: Millis | None = Field(default=None, description="From the first token to the last.")


class MessageUpdate(PartialUpdate):
    """Only the fields sent change; null clears an optional one. The UI saves a reply this way as it streams."""

    clearable = frozenset(
        {"reasoning", "tool_calls", "error", "model", "finish_reason", "prompt_tokens", "completion_tokens"}
        | {"ttft_ms", "decode_ms"}
    )

    content: Text | None = None
    images: list[ImageUrl] | None = Field(default=None, max_length=16)
    reasoning: Text | None = None
    tool_calls: list[ToolCallRecord] | None = Field(default=None, max_length=128)
    status: Status | None = None
    error: str | None = Field(default=None, max_length=10_000)
    model: ModelName | None = None
    params: ChatOptions | None = None
    finish_reason: str | None = Field(default=None, max_length=64)
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    ttft_ms: Millis | None = None
    decode_ms: Millis | None = None


class MessagePublic(BaseModel):
    id: int
    chat_id: int
    role: Role
    content: str
    images: list[str]
    reasoning: str | None
    tool_calls: list[ToolCallRecord] | None
    status: Status
    error: str | None
    model: str | None
    params: ChatOptions
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft_ms: float | None
    decode_ms: float | None
    created_at: float
    updated_at: float


class ChatDetail(ChatPublic):
    messages: list[MessagePublic]
