"""Ollama's API (docs/api.md of ollama/ollama): requests and replies. Unknown fields are ignored, as Ollama does:
its clients send options and fields of newer versions (Open WebUI, the official clients)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlx_manager.api.int64 import INT64_MAX

KeepAlive = str | float | None
Think = bool | Literal["low", "medium", "high"] | None
Format = Literal["", "json"] | dict[str, Any] | None


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Options(Lenient):
    """The runtime options this server maps onto its sampling; the others (num_gpu, mirostat, ...) are ignored."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=INT64_MAX)
    min_p: float | None = Field(default=None, ge=0, le=1)
    num_predict: int | None = Field(default=None, ge=-2, le=INT64_MAX, description="-1 and -2: up to the context.")
    num_ctx: int | None = Field(default=None, ge=1, le=INT64_MAX)
    stop: list[str] | str | None = None
    seed: int | None = Field(default=None, ge=-INT64_MAX, le=INT64_MAX)
    repeat_penalty: float | None = Field(default=None, gt=0)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    # An extension (Ollama has none): force a tool call, as OpenAI's tool_choice does.
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description='Extension: "auto", "none", "required" or {"function": {"name": ...}}.'
    )


class NamedModel(Lenient):
    """`model`, or the older `name` that Ollama still takes."""

    model: str = ""
    name: str | None = Field(default=None, description="Older spelling of `model`.")

    @model_validator(mode="after")
    def _named(self) -> NamedModel:
        if not self.model and self.name:
            self.model = self.name
        return self


class Generating(NamedModel):
    format: Format = Field(default=None, description='"json", or a JSON Schema the reply must match.')
    options: Options | None = None
    stream: bool = True
    keep_alive: KeepAlive = Field(
        default=None, description='A duration ("5m", "1h30m") or seconds; negative: until unloaded; 0: unload now.'
    )
    think: Think = None
    logprobs: bool = False
    top_logprobs: int = Field(default=0, ge=0, le=20)


class FunctionCall(Lenient):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(Lenient):
    id: str | None = None
    function: FunctionCall


class Message(Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = Field(default=None, description="Base64 images (vision models).")
    thinking: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None


class ChatRequest(Generating):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None


class GenerateRequest(Generating):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class EmbedRequest(NamedModel):
    input: str | list[str] = Field(default_factory=list)
    truncate: bool = True
    options: Options | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = Field(default=None, ge=1, le=INT64_MAX)


class EmbeddingsRequest(NamedModel):
    prompt: str = ""
    options: Options | None = None
    keep_alive: KeepAlive = None


class ShowRequest(NamedModel):
    verbose: bool = False


class PullRequest(NamedModel):
    insecure: bool = False
    stream: bool = True


class CopyRequest(Lenient):
    source: str
    destination: str


# --- replies -----------------------------------------------------------------------------------------------------


class OutCall(BaseModel):
    function: FunctionCall
    id: str | None = None


class OutMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = ""
    thinking: str | None = None
    tool_calls: list[OutCall] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float


class Logprob(TopLogprob):
    top_logprobs: list[TopLogprob] | None = None


class Timings(BaseModel):
    """The last chunk's counters, in nanoseconds (durations) and tokens."""

    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ChatChunk(Timings):
    model: str
    created_at: str
    message: OutMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None


class GenerateChunk(Timings):
    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingsResponse(BaseModel):
    embedding: list[float]


class Details(BaseModel):
    parent_model: str = ""
    format: str = "safetensors"
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class TagModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class Tags(BaseModel):
    models: list[TagModel]


class RunningModel(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: Details
    expires_at: str
    size_vram: int
    context_length: int | None = None


class Running(BaseModel):
    models: list[RunningModel]


class Show(BaseModel):
    modelfile: str
    parameters: str
    template: str
    details: Details
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    license: str | None = None


class Progress(BaseModel):
    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class Version(BaseModel):
    version: str
