"""The backend interface: what the local engine, a remote server and the router choosing between them each offer
the APIs, so every protocol's request takes one path whatever runs it. No HTTP here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import KVSetting, ModelTask, Prompt, SamplingParams

LOCAL = "local"


@dataclass(frozen=True)
class Capabilities:
    """What a model can be asked where it runs; None: this server cannot know (a remote backend decides)."""

    where: str = LOCAL  # "local", or the backends a routing rule names (for messages)
    task: ModelTask | None = "generate"
    images: bool | None = False
    audio: bool | None = False  # input_audio chat parts (a model that hears)
    embeddings: bool = False  # an embedding or reranking model: /v1/embeddings, /v1/rerank
    count_tokens: bool = True


@dataclass(frozen=True)
class Run:
    """How a generation runs, beside what it generates: its sequences (n), its queue priority, and a profile's KV
    setting (for a local model it loads; a loaded model keeps its own; remote backends ignore it)."""

    n: int = 1
    priority: int = 0
    kv: KVSetting | None = None


ONE = Run()


class Backend(Protocol):
    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation: ...

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int: ...

    async def capabilities(self, model_id: str) -> Capabilities: ...
