from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic.dataclasses import dataclass

from mlx_manager.api.model_cards import SamplingDefault
from mlx_manager.engine.types import ModelFacts


class AdapterIn(BaseModel):
    path: str = Field(description="The adapter's folder on the server (mlx-lm's or PEFT's LoRA format).")
    name: str | None = Field(None, description="Served as BASE@NAME; default: the folder's name.")


class AdapterOut(BaseModel):
    """A LoRA adapter live on its loaded base, served as `id` (BASE@NAME)."""

    id: str
    base: str
    name: str
    path: str
    format: str  # mlx (mlx-lm) or peft
    memory_bytes: int  # its own weights: the base is shared
    modules: int  # linear layers it changes
    loaded_at: float
    active_requests: int


class RankOut(BaseModel):
    rank: int
    host: str
    weight_bytes: int  # its share of the weights
    active_bytes: int  # MLX memory in use once loaded


class DistributedOut(BaseModel):
    """How a distributed model is split, where each rank runs and what it holds; `error` while unavailable."""

    strategy: str
    backend: str
    ranks: list[RankOut]
    error: str | None = None


class LoadedModelOut(BaseModel):
    id: str
    path: str
    family: str
    memory_bytes: int
    pinned: bool
    active_requests: int
    loaded_at: float
    load_seconds: float
    idle_seconds: float
    state: str
    requests_done: int
    requests_cancelled: int
    tokens_generated: int
    running: int
    waiting: int
    # What the weights compute in, bits of layers still quantized (None: float weights), and the stored format
    # when the model was converted to float32 at load on a CPU backend (cpu_dtype).
    dtype: str | None = None
    quantization_bits: int | None = None
    converted_from: str | None = None
    # The KV cache: bits and group size when quantized (None: float), and what one token of it takes.
    kv_bits: int | None = None
    kv_group_size: int | None = None
    kv_bytes_per_token: int = 0
    # Speculative decoding (engine/speculative): its mode, draft tokens checked, accepted, and their ratio.
    speculative: str = "off"
    draft_tokens: int = 0
    accepted_draft_tokens: int = 0
    draft_acceptance_rate: float = 0.0
    # LoRA adapters live on this model; memory_bytes above includes theirs.
    adapters: list[AdapterOut] = Field(default_factory=list)
    # A distributed model (engine/distributed): its ranks instead of a pool entry; None for local models.
    distributed: DistributedOut | None = None


class LoadedModels(BaseModel):
    data: list[LoadedModelOut]
    memory_budget_bytes: int
    max_models: int
    loads: int


@dataclass(frozen=True)
class LocalModelOut(ModelFacts):
    """A model on disk: the engine's facts about it (declared there), then what the admin API adds."""

    source: str
    task: str = "generate"  # generate, embed, score (reranker), transcribe (speech to text) or speak (text to speech)
    vision: bool = False  # accepts images (a vision-language model)
    loaded: bool = False
    # What a request that leaves a sampling value out gets on this model, and from where.
    sampling_defaults: dict[str, SamplingDefault] = Field(default_factory=dict)


class DiskCacheOut(BaseModel):
    """The cold tier of one model: its files, and the folder's budget shared by all models."""

    folder: str
    entries: int
    bytes: int
    folder_bytes: int
    max_bytes: int
    reads: int
    read_seconds: float
    read_bytes: int
    writes: int
    write_seconds: float
    written_bytes: int
    evictions: int
    unreadable: int  # torn or altered files found, deleted and never loaded
    skipped: int  # writes left out for want of room


class PrefixCacheOut(BaseModel):
    entries: int
    bytes: int
    max_bytes: int
    block_size: int
    lookups: int
    hits: int
    tokens_requested: int
    tokens_reused: int
    evictions: int
    recent: list[dict[str, int | str | None]]
    # "any-prefix" (plain attention KV), "exact" (sliding-window / recurrent layers) or "off", and why.
    reuse: str = "any-prefix"
    reuse_reason: str = ""
    layers: dict[str, int] = Field(default_factory=dict)
    hits_by_tier: dict[str, int] = Field(default_factory=dict)
    tokens_reused_by_tier: dict[str, int] = Field(default_factory=dict)
    prompt_tokens_computed: int = 0  # prefilled, not taken from a cache
    disk: DiskCacheOut | None = None
