"""The engine's front door: find models, hand out generations, manage the pool. No HTTP here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from mlx_manager.config import default
from mlx_manager.engine import cpu_kernels, generation_defaults
from mlx_manager.engine.adapters.lora import LiveAdapter
from mlx_manager.engine.adapters.service import Adapters
from mlx_manager.engine.audio import service as audio
from mlx_manager.engine.audio import speak
from mlx_manager.engine.audio.model import SpeechModel, load_speech_model
from mlx_manager.engine.audio.tts import TextToSpeechModel, load_tts_model
from mlx_manager.engine.audio.types import Job, TranscribeOptions, Transcript
from mlx_manager.engine.backend import ONE, Capabilities, Run
from mlx_manager.engine.constraints import ConstraintFactory, Grammar
from mlx_manager.engine.cpu_dtype import WeightPlan
from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.disk_cache import DiskStore
from mlx_manager.engine.embeddings import service as embeddings
from mlx_manager.engine.embeddings.model import EmbeddingModel, load_embedding_model
from mlx_manager.engine.errors import (
    ContextLengthError,
    InvalidRequestError,
    MemoryPressureError,
    ModelNotFoundError,
)
from mlx_manager.engine.generation import Generation, GenerationObserver
from mlx_manager.engine.loader import LoadedModel, load_model, release_memory
from mlx_manager.engine.memory import MemoryGuard, Trimmable
from mlx_manager.engine.output import output_parser_factory, reasoning_budget_factory
from mlx_manager.engine.pool import ModelPool, PoolConfig, PoolEntry
from mlx_manager.engine.prompt import DEFAULT_VOLATILE_PATTERNS, strip_volatile, tokenize
from mlx_manager.engine.prompt_limits import check_size
from mlx_manager.engine.sequence import Sequence
from mlx_manager.engine.structured import Constraint, fit_forced_call, request_constraint
from mlx_manager.engine.types import (
    ChatPrompt,
    KVSetting,
    ModelInfo,
    ModelTask,
    Prompt,
    SamplingDefaults,
    SamplingParams,
)
from mlx_manager.engine.vision.inputs import VisionInputs, prepare_inputs
from mlx_manager.engine.vision.scheduler import VisionScheduler

log = logging.getLogger(__name__)

# Why a model cannot serve a request of another task; said before anything is loaded.
_WRONG_TASK: dict[ModelTask, str] = {
    "generate": "is a text-generation model; it cannot produce embeddings, rerank documents, transcribe or speak",
    "embed": "is an embedding model; it cannot generate text (use it for embeddings or reranking)",
    "score": "is a reranker (cross-encoder); it can only score documents against a query (rerank)",
    "transcribe": "is a speech-to-text model; use it with /v1/audio/transcriptions or /v1/audio/translations",
    "speak": "is a text-to-speech model; use it with /v1/audio/speech",
}


def load_any(info: ModelInfo, plan: WeightPlan) -> LoadedModel | EmbeddingModel | SpeechModel | TextToSpeechModel:
    if info.task == "transcribe":
        return load_speech_model(info)
    if info.task == "speak":
        return load_tts_model(info)
    return load_model(info, plan) if info.task == "generate" else load_embedding_model(info)


@dataclass(frozen=True)
class EngineConfig:
    model_dirs: list[Path]
    hf_cache: Path | None
    pool: PoolConfig
    default_max_tokens: int = default("default_max_tokens")
    preload: list[str] = field(default_factory=list)
    rescan_seconds: float = 2.0
    volatile_prompt_patterns: tuple[str, ...] = DEFAULT_VOLATILE_PATTERNS
    observer: GenerationObserver | None = None  # token timing for metrics
    max_tools: int = default("max_tools")
    # Server-wide sampling defaults ([generation] settings), below the model's own.
    generation_defaults: SamplingDefaults = field(default_factory=SamplingDefaults)
    # Checked before templating (400s naming the setting); None = no limit.
    max_prompt_bytes: int | None = None
    max_messages: int | None = None
    # On MLX's CPU backend, attention and SwiGLU through NumPy on every core (engine/cpu_kernels).
    cpu_kernels: bool = True


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        cpu_kernels.install(config.cpu_kernels)
        self.pool = ModelPool(config.pool, load_any, release_memory)
        self._models: dict[str, ModelInfo] = {}
        self._scanned_at = 0.0
        self._scan_lock = asyncio.Lock()
        self._volatile = [re.compile(p) for p in config.volatile_prompt_patterns]
        self._tasks: list[asyncio.Task[None]] = []
        self.adapters = Adapters()
        # Models another backend in this server runs (distributed ranks), listed and resolved beside the found ones.
        self.listed: dict[str, ModelInfo] = {}
        self.listed_loaded: Callable[[str], bool] = lambda _id: False  # whether that backend runs one now
        # The memory ceiling (engine/memory): MLX's limit at the pool's budget, load shed before swapping.
        self.memory = MemoryGuard(lambda: self.pool.config.memory_budget_bytes, lambda: self.pool.config.reserve_bytes)

    async def start(self) -> None:
        await self.refresh_models(force=True)
        for model_id in self.config.preload:
            entry = await self._acquire(await self.resolve(model_id), pin=True)
            self.pool.release(entry)
        # Always running: the TTL can be switched on while the server runs.
        self._tasks.append(asyncio.create_task(self.pool.run_idle_reaper()))
        self.memory.apply()
        self._tasks.append(asyncio.create_task(self.memory.run(self._busy, self._caches)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()
        await asyncio.to_thread(DiskStore.drain_all)  # the prefix cache's last writes, queued at unload

    async def refresh_models(self, force: bool = False) -> dict[str, ModelInfo]:
        """Rescan at most once per `rescan_seconds` (forced: once a second); concurrent callers share a scan."""
        async with self._scan_lock:
            age = time.monotonic() - self._scanned_at
            if not self._scanned_at or age > self.config.rescan_seconds or (force and age > 1.0):
                self._models = await asyncio.to_thread(self._scan)
                self._scanned_at = time.monotonic()
        return self._models

    def _scan(self) -> dict[str, ModelInfo]:
        models = discover_models(self.config.model_dirs, self.config.hf_cache)
        return models | self.adapters.scan(self.config.model_dirs, self.config.hf_cache, models)

    async def _acquire(self, info: ModelInfo, **kwargs: Any) -> PoolEntry:
        """`pool.acquire`; for an adapter (`BASE@NAME`), its base, with the adapter attached."""
        if info.adapter is None:
            return await self.pool.acquire(info, **kwargs)
        entry = await self.pool.acquire(await self.resolve(info.adapter.base), **kwargs)
        try:
            await self.adapters.attach(entry, info.adapter)
        except BaseException:
            self.pool.release(entry)
            raise
        return entry

    async def add_adapter(self, base_id: str, path: str, name: str | None = None) -> ModelInfo:
        """Serve the adapter at `path` on `base_id` as `BASE@NAME` and attach it now (loading the base)."""
        base = await self.resolve_for(base_id, "generate")
        if base.adapter is not None:
            raise InvalidRequestError(f"'{base_id}' is an adapter; adapters go on a base model.", param="model")
        models = await self.refresh_models()
        info = await asyncio.to_thread(self.adapters.describe, base, path, name, models)
        taken, ref = models.get(info.id), info.adapter
        assert ref is not None
        if taken is not None and (taken.adapter is None or Path(taken.adapter.path) != Path(ref.path)):
            raise InvalidRequestError(
                f"'{info.id}' already names the adapter at {taken.adapter.path if taken.adapter else taken.path};"
                " give this one another name.",
                param="name",
            )
        self.pool.release(await self._acquire(info))  # attaching is what checks the weights against the base
        self.adapters.added[info.id] = info
        self._models = {**self._models, info.id: info}
        return info

    async def rescan_models(self) -> dict[str, ModelInfo]:
        """Rescan now, whenever the last scan was: the model folders changed (a download finished, a model was
        deleted)."""
        async with self._scan_lock:
            self._scanned_at = 0.0
        return await self.refresh_models()

    async def list_models(self) -> list[ModelInfo]:
        return [*(await self.refresh_models()).values(), *self.listed.values()]

    async def resolve(self, model_id: str) -> ModelInfo:
        loaded = self.pool.get(model_id)
        if loaded is not None:
            return loaded.info
        if model_id in self.listed:
            return self.listed[model_id]
        models = await self.refresh_models()
        if model_id not in models:
            models = await self.refresh_models(force=True)
        if model_id not in models:
            raise ModelNotFoundError(model_id, sorted(models))
        return models[model_id]

    async def load(self, model_id: str, pin: bool = False, kv: KVSetting | None = None) -> PoolEntry:
        """Load (or find loaded) a model; `kv` overrides the server's KV setting while it stays loaded."""
        entry = await self._acquire(await self.resolve(model_id), pin=pin, kv=kv)
        self.pool.release(entry)
        return entry

    async def resolve_for(self, model_id: str, *tasks: ModelTask) -> ModelInfo:
        """`resolve`, then a 400 naming the model when it is not for one of these tasks."""
        info = await self.resolve(model_id)
        if info.task not in tasks:
            raise InvalidRequestError(f"The model '{model_id}' {_WRONG_TASK[info.task]}.", param="model")
        return info

    async def capabilities(self, model_id: str) -> Capabilities:
        """What the model can be asked (the backend interface, engine/backend.py); a 404 when there is none."""
        info = await self.resolve(model_id)
        return Capabilities(
            task=info.task, images=info.vision, audio=info.audio, embeddings=info.task in ("embed", "score")
        )

    def sampling_for(self, info: ModelInfo, params: SamplingParams) -> SamplingParams:
        """The request's sampling values, with what it left out from the model, then the server's defaults."""
        return generation_defaults.fill(params, info.generation_defaults, self.config.generation_defaults)

    def sampling_defaults(self, info: ModelInfo) -> dict[str, tuple[float | int, generation_defaults.Source]]:
        """The values a request that sets none gets on this model, and where each comes from."""
        return generation_defaults.resolved(None, info.generation_defaults, self.config.generation_defaults)

    def _busy(self) -> bool:
        self.memory.apply()  # the budget may have changed (live settings)
        return any(e.scheduler.stats.running or e.scheduler.stats.waiting for e in self.pool.entries() if e.scheduler)

    def _caches(self) -> list[Trimmable]:
        schedulers = [e.scheduler for e in self.pool.entries() if e.scheduler is not None]
        features = [f for s in schedulers if (f := getattr(s, "features", None)) is not None]  # vision models
        return [*(s.cache for s in schedulers), *features]

    def _check_memory(self) -> None:
        """While memory is short, new generations are refused (503) rather than pushing the machine into swap."""
        if self.memory.shedding and not self._busy():
            self.memory.end_shedding()  # as the monitor's next round would: not refused for that tick
        if self.memory.shedding:
            self.memory.stats.shed += 1
            used, budget = self.memory.stats.last.used, self.pool.config.memory_budget_bytes
            raise MemoryPressureError(
                f"The server is short of memory (MLX uses {used / 1e6:.0f} MB of its {budget / 1e6:.0f} MB budget);"
                " new requests wait until running ones finish. Retry shortly.",
                retry_after=2,
            )

    def active_requests(self) -> int:
        """Requests holding a model: generating, embedding, or waiting for a load."""
        return sum(e.active for e in self.pool.entries())

    def abort_all(self) -> int:
        """End every generation now with a final chunk (shutdown); returns how many were ended."""
        return sum(e.scheduler.abort_all() for e in self.pool.entries() if e.scheduler is not None)

    def check_prompt_size(self, prompt: Prompt) -> None:
        """The cheap 400s (bytes, messages), before a model is resolved or a template rendered."""
        check_size(prompt, self.config.max_prompt_bytes, self.config.max_messages)

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int:
        """Prompt tokens as `generate` would count them (loads the model: the tokenizer and template live there)."""
        self.check_prompt_size(prompt)
        entry = await self._acquire(_accepts(await self.resolve_for(model_id, "generate"), prompt))
        try:
            ids, _, _, _ = await self._prompt_ids(entry, prompt)
            return len(ids)
        finally:
            self.pool.release(entry)

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        """Validate and queue a generation; request errors are raised here, before any output. `run.kv` (a
        profile's kv_bits): the KV setting to load the model with if this request loads it; a loaded model keeps its
        own."""
        self.check_prompt_size(prompt)
        self._check_memory()
        info = _accepts(await self.resolve_for(model_id, "generate"), prompt)
        entry = await self._acquire(info, kv=run.kv, kv_strict=False)
        try:
            assert isinstance(entry.loaded, LoadedModel) and entry.scheduler is not None
            lm = entry.loaded
            if isinstance(prompt, ChatPrompt) and len(prompt.tools or []) > self.config.max_tools:
                raise InvalidRequestError(
                    f"{len(prompt.tools or [])} tools were offered; at most {self.config.max_tools} are allowed"
                    " (max_tools).",
                    param="tools",
                )
            limits = [n for n in (lm.context_length, params.max_context) if n]
            context = min(limits) if limits else None
            prompt_ids, prompt, rendered, vision_inputs = await self._prompt_ids(entry, prompt, context)
            if not prompt_ids:
                raise InvalidRequestError("The prompt is empty.", param="prompt")
            param = "messages" if isinstance(prompt, ChatPrompt) else "prompt"
            max_tokens = self._max_tokens(lm, len(prompt_ids), params, param)
            params = self.sampling_for(lm.info, params)
            adapter = info.adapter.id if info.adapter is not None else None
            if adapter is not None:  # the prefix cache holds the base's KV; an adapter's differs, and is not kept
                params = replace(params, cache=False)
            if params.top_k is not None and params.top_k >= lm.vocab_size:  # keeping every token is no filter at all
                params = replace(params, top_k=0)
            bad = [t for t in params.logit_bias if t < 0 or t >= lm.vocab_size]
            if bad:
                raise InvalidRequestError(f"logit_bias has token ids out of range: {bad[:5]}", param="logit_bias")
            gen = Generation(len(prompt_ids), run.n, model_id, self.config.observer)
            constraint = request_constraint(lm.family, prompt, params, rendered)
            constraint = fit_forced_call(constraint, max_tokens, partial(_count_tokens, lm))
            grammar = await self._grammar(lm, constraint, params)
            parser = output_parser_factory(lm.family, prompt, rendered, constraint)
            # A grammar that allows reasoning bounds it itself; otherwise a processor forces the end tag.
            in_grammar = constraint is not None and constraint.spec.preamble is not None
            budget_tokens = None if in_grammar else params.max_reasoning_tokens
            budget = reasoning_budget_factory(lm, prompt, rendered, budget_tokens, params.strict_reasoning_budget)
            seqs = [
                Sequence(
                    gen,
                    i,
                    prompt_ids,
                    params,
                    max_tokens,
                    run.priority,
                    make_parser=parser,
                    inputs=vision_inputs,
                    extra_processors=[
                        *([budget()] if budget is not None else []),
                        *([lm.constraints.processor(grammar)] if grammar is not None else []),
                    ],
                    adapter=adapter,
                )
                for i in range(run.n)
            ]
            entry.scheduler.submit(seqs)
        except BaseException:
            self.pool.release(entry)
            raise
        live = lm.adapters.live.get(adapter) if adapter is not None and lm.adapters is not None else None
        if live is not None:
            live.active += 1
        gen.add_done_callback(partial(self._done, entry, live))
        return gen

    def _done(self, entry: PoolEntry, live: LiveAdapter | None) -> None:
        if live is not None:
            live.active -= 1
        self.pool.release(entry)

    async def embed(
        self, model_id: str, inputs: embeddings.EmbedInputs, dimensions: int | None = None
    ) -> embeddings.Embeddings:
        """One vector per input, batched in one request on the model's thread."""
        entry = await self.pool.acquire(await self.resolve_for(model_id, "embed"))
        try:
            assert isinstance(entry.loaded, EmbeddingModel)
            return await embeddings.embed(entry.runner, entry.loaded, inputs, dimensions)
        finally:
            self.pool.release(entry)

    async def rerank(self, model_id: str, query: str, documents: list[str]) -> embeddings.Ranking:
        """Relevance of each document to the query: a cross-encoder's score, or a bi-encoder's cosine."""
        entry = await self.pool.acquire(await self.resolve_for(model_id, "embed", "score"))
        try:
            assert isinstance(entry.loaded, EmbeddingModel)
            return await embeddings.rerank(entry.runner, entry.loaded, query, documents)
        finally:
            self.pool.release(entry)

    async def transcribe(
        self,
        model_id: str,
        data: bytes,
        options: TranscribeOptions,
        max_seconds: float | None = None,
        *,
        job: Job | None = None,
        priority: int = 0,
        queue_seconds: float = 0,
    ) -> Transcript:
        """Speech to text (or to English, `options.task` "translate") of an uploaded audio file; `job` streams
        the text by window and can stop the work (audio/service.py)."""
        entry = await self.pool.acquire(await self.resolve_for(model_id, "transcribe"))
        try:
            assert isinstance(entry.loaded, SpeechModel)
            return await audio.transcribe(
                entry.runner, entry.loaded, data, options, max_seconds,
                job=job, priority=priority, queue_seconds=queue_seconds,
            )  # fmt: skip
        finally:
            self.pool.release(entry)

    async def speak(self, model_id: str, text: str, options: speak.SpeakOptions) -> speak.Speech:
        """Text to speech: checked here (a 400 before any audio), then spoken as `Speech.chunks()` is read; the
        model is held until that ends or `close()`."""
        entry = await self.pool.acquire(await self.resolve_for(model_id, "speak"))
        try:
            assert isinstance(entry.loaded, TextToSpeechModel)
            sentences = speak.check(entry.loaded, text, options)
        except BaseException:
            self.pool.release(entry)
            raise
        return speak.Speech(entry.runner, entry.loaded, sentences, options, partial(self.pool.release, entry))

    async def _prompt_ids(
        self, entry: PoolEntry, prompt: Prompt, context: int | None = None
    ) -> tuple[list[int], Prompt, str | None, VisionInputs | None]:
        """The token ids the model sees (a vision model's with each image's tokens, as usage counts them), the
        prompt without volatile markers, its rendered text, and a vision model's inputs. A text longer than
        `context` tokens (the model's by default) can hold is refused before it is tokenized."""
        assert isinstance(entry.loaded, LoadedModel)
        lm = entry.loaded
        if isinstance(prompt, ChatPrompt):
            prompt = strip_volatile(prompt, self._volatile)
        bound = (context or lm.context_length, lm.max_token_chars)
        ids, rendered = await asyncio.to_thread(
            tokenize, lm.tokenizer, prompt, lm.vocab_size, lm.family.reasoning, bound
        )
        vision_inputs = await self._vision_inputs(entry, prompt, rendered)
        return (vision_inputs.ids if vision_inputs is not None else ids), prompt, rendered, vision_inputs

    @staticmethod
    async def _vision_inputs(entry: PoolEntry, prompt: Prompt, rendered: str | None) -> VisionInputs | None:
        """A vision model's chat prompt goes through its processor, on the model's thread; None otherwise."""
        lm = entry.loaded
        if not isinstance(lm, LoadedModel) or lm.vision is None or not isinstance(prompt, ChatPrompt):
            return None
        assert isinstance(entry.scheduler, VisionScheduler) and rendered is not None
        return await entry.scheduler.call(prepare_inputs, lm, rendered, prompt.images, prompt.audios)

    @staticmethod
    async def _grammar(lm: LoadedModel, constraint: Constraint | None, params: SamplingParams) -> Grammar | None:
        """Compile the request's constraint (a response format or a forced tool call), or None for free text."""
        if constraint is None:
            return None
        if params.ignore_eos:
            raise InvalidRequestError("ignore_eos cannot be combined with structured output.", param="ignore_eos")
        if lm.constraints is None:
            lm.constraints = await asyncio.to_thread(ConstraintFactory.for_model, lm)
        grammar: Grammar = await asyncio.to_thread(lm.constraints.compile, constraint.spec)
        return grammar

    def _max_tokens(self, lm: LoadedModel, prompt_len: int, params: SamplingParams, param: str) -> int:
        requested = params.max_tokens
        limits = [n for n in (lm.context_length, params.max_context) if n]
        limit = min(limits) if limits else None
        if requested is None:
            room = (limit - prompt_len) if limit else self.config.default_max_tokens
            if room <= 0:
                raise ContextLengthError(prompt_len, 1, limit or 0, param)
            return min(self.config.default_max_tokens, room)
        if limit and prompt_len + requested > limit:
            raise ContextLengthError(prompt_len, requested, limit, param)
        return requested


def _count_tokens(lm: LoadedModel, text: str) -> int:
    return len(lm.tokenizer.encode(text, add_special_tokens=False))


def _accepts(info: ModelInfo, prompt: Prompt) -> ModelInfo:
    """A 400 before anything is loaded when a text-only model is sent images, or images and parts disagree."""
    if not isinstance(prompt, ChatPrompt):
        return info
    if prompt.images and not info.vision:
        raise InvalidRequestError(
            f"The model '{info.id}' does not accept images: it is a text-only model. Send text only, or use a"
            " vision model.",
            param="messages",
        )
    if prompt.audios and not info.audio:
        raise InvalidRequestError(
            f"The model '{info.id}' cannot hear: it takes no audio input. Transcribe the audio first with"
            " POST /v1/audio/transcriptions and send the text, or use a model that hears.",
            param="messages",
        )
    for kind, given in (("image", len(prompt.images)), ("audio", len(prompt.audios))):
        parts = sum(
            1
            for m in prompt.messages
            if isinstance(m.get("content"), list)
            for p in m["content"]
            if isinstance(p, dict) and p.get("type") == kind
        )
        if parts != given:
            raise InvalidRequestError(f"{parts} {kind} parts but {given} {kind} inputs were given.", param="messages")
    return info
