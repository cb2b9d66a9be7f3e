"""Plain data the engine takes and gives: no HTTP, no MLX arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

# Declared below the settings (config.py reads it too); the engine takes it from here.
from mlx_manager.config import default
from mlx_manager.sampling_defaults import SamplingDefaults as SamplingDefaults

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

# "cancelled": the client left; "aborted": the server cut the sequence short (shutdown) and says so.
FinishReason = Literal["stop", "length", "tool_calls", "cancelled", "aborted"]
# What a model is for: text generation, embeddings (bi-encoder), or scoring pairs (cross-encoder reranker).
ModelTask = Literal["generate", "embed", "score", "transcribe", "speak"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = None
    # None: the request left it out; the engine fills it from the model, the server, then the API default
    # (engine/generation_defaults.py).
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0
    ignore_eos: bool = False
    # Reasoning tokens allowed before the end tag is forced; None = no limit.
    max_reasoning_tokens: int | None = None
    # False: a model that cannot reason ignores the budget instead of refusing the request (Anthropic's thinking).
    strict_reasoning_budget: bool = True
    # Structured output as plain data: {"type": "json_object"} or {"type": "json_schema", "schema": {...}}.
    response_format: dict[str, Any] | None = None
    # A context length below the model's own (prompt + completion tokens), e.g. a profile's; None = the model's.
    max_context: int | None = None
    # False: nothing of this request is written to the prefix cache, RAM or disk (it still reuses what is there).
    cache: bool = True


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation to render through the model's chat template; `tools` are OpenAI function tools."""

    messages: list[dict[str, Any]]
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None
    parse_tool_calls: bool = False
    parallel_tool_calls: bool = True
    # "required" or a function name: the call is enforced with a grammar.
    force_tool: str | None = None
    # False: the reply starts with its answer, no reasoning first (Anthropic's forced tool use): a block the
    # template opened is closed in the prompt, and the grammar allows none.
    allow_reasoning: bool = True
    # The last message is the start of the assistant's reply, to be continued (Anthropic prefill).
    continue_final: bool = False
    # Decoded RGB images, in the order of the {"type": "image"} parts in `messages` (vision models only).
    images: tuple[Image, ...] = ()
    # The same images as data: URLs (the client's bytes), for a remote backend that gets them as sent.
    image_urls: tuple[str, ...] = ()
    # Decoded audio (16 kHz mono float32), in the order of the {"type": "audio"} parts (models that hear only).
    audios: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class TextPrompt:
    """A raw prompt: text, or token ids given by the client."""

    text: str | None = None
    token_ids: tuple[int, ...] | None = None


Prompt = ChatPrompt | TextPrompt


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    token_id: int
    logprob: float
    bytes: list[int]
    top: list[tuple[str, int, float]]


@dataclass(frozen=True)
class ToolCallDelta:
    """Part of a tool call: the first delta of a call carries id and name, later ones argument fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class GenerationChunk:
    """Output of one step; finish_reason is set on the last chunk of a sequence."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    reasoning: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    # The stop string that ended the sequence (finish_reason "stop"), for APIs that report it.
    stop_sequence: str | None = None


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class AdapterRef:
    """A LoRA adapter served on a base model as `BASE@NAME` (engine/adapters): mlx-lm's or PEFT's format."""

    base: str
    name: str
    path: str
    format: Literal["mlx", "peft"]

    @property
    def id(self) -> str:
        return f"{self.base}@{self.name}"


@dataclass(frozen=True)
class ModelFacts:
    """What discovery reads about a model folder; the admin API's reply about a local model shows them too."""

    id: str
    path: str
    family: str
    model_type: str
    size_bytes: int
    context_length: int | None
    quantization_bits: int | None


@dataclass(frozen=True)
class ModelInfo(ModelFacts):
    """A model found on disk that MLX can load."""

    source: Literal["hf-cache", "folder"]
    created: int
    task: ModelTask = "generate"
    # A vision-language model (loaded with mlx-vlm): its chat prompts may carry images.
    vision: bool = False
    # A vision-language model with an audio tower (e.g. Gemma 4): its chat prompts may carry audio too.
    audio: bool = False
    # KV cache bytes one token of context costs (0 when config.json does not say), for the memory gate.
    kv_bytes_per_token: int = 0
    # The model authors' sampling recommendation (generation_config.json).
    generation_defaults: SamplingDefaults = field(default_factory=lambda: SamplingDefaults())
    # A LoRA adapter on the base model `adapter.base` (its other fields are the base's); None for a model.
    adapter: AdapterRef | None = None


@dataclass(frozen=True)
class KVSetting:
    """How a model keeps its KV cache: float (bits None) or quantized to `bits` in groups of `group_size`."""

    bits: int | None = None
    group_size: int = default("kv_group_size")

    @property
    def quantized(self) -> bool:
        return self.bits is not None

    def describe(self) -> str:
        return f"{self.bits}-bit (groups of {self.group_size})" if self.bits is not None else "float"


FLOAT_KV = KVSetting()
