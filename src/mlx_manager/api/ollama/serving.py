"""Engine output to Ollama's chat and generate replies, whole or as NDJSON lines, with the last line's counters
from this request's own timings; keep_alive onto the pool; embeddings. No MLX here."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from mlx_manager.api.errors import APIError
from mlx_manager.api.ollama import translate
from mlx_manager.api.ollama.schemas import (
    ChatChunk,
    ChatRequest,
    EmbedRequest,
    EmbedResponse,
    FunctionCall,
    GenerateChunk,
    GenerateRequest,
    Generating,
    Logprob,
    OutCall,
    OutMessage,
    Timings,
    TopLogprob,
)
from mlx_manager.api.replies import Disconnected, api_finish, assemble, until_done
from mlx_manager.api.request.normalize import Limits
from mlx_manager.api.request.start import Serving, Starter, only_here
from mlx_manager.api.request.streaming import MODEL_FAILED, stream_failure
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk, TokenLogprob
from mlx_manager.manager.profiles import resolve_target

NS = 1_000_000_000


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return max(int(seconds * NS), 0)


@dataclass
class Run:
    """A started generation and the clock of its request: arrival, start (model loaded, prompt queued), first and
    last token."""

    gen: Generation
    model: str  # as the client named it
    target: str  # the model that runs it (a profile's, or the same)
    keep_alive: float | None
    received: float
    started: float
    load_seconds: float
    first_token: float | None = None
    last_token: float | None = None
    chunks: list[GenerationChunk] = field(default_factory=list)

    def timings(self) -> Timings:
        end = time.perf_counter()
        first = self.first_token or end
        last = self.last_token or first
        usage = self.gen.usage
        return Timings(
            total_duration=_ns(end - self.received),
            load_duration=_ns(self.load_seconds),
            prompt_eval_count=usage.prompt_tokens,
            prompt_eval_duration=_ns(first - self.started),
            eval_count=usage.completion_tokens,
            eval_duration=_ns(last - first),
        )

    async def pieces(self) -> AsyncIterator[GenerationChunk]:
        async for piece in self.gen:
            if piece.token_ids:
                self.last_token = time.perf_counter()
                self.first_token = self.first_token or self.last_token
            if piece.finish_reason != "cancelled":
                self.chunks.append(piece)
                yield piece


def done_reason(reason: str | None) -> str:
    """Ollama says "stop" or "length" (a reply that called tools stopped too)."""
    return "length" if api_finish(reason) == "length" else "stop"


def _logprobs(items: list[TokenLogprob]) -> list[Logprob] | None:
    if not items:
        return None
    return [
        Logprob(
            token=lp.token, logprob=lp.logprob, top_logprobs=[TopLogprob(token=t, logprob=v) for t, _i, v in lp.top]
        )
        for lp in items
    ]


def _calls(chunks: list[GenerationChunk]) -> list[OutCall]:
    calls = []
    for call in assemble(chunks).tool_calls:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except json.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            arguments = {"arguments": call.arguments}  # never drop what the model wrote
        calls.append(OutCall(id=call.id or None, function=FunctionCall(name=call.name, arguments=arguments)))
    return calls


def error_line(exc: Exception) -> str:
    """A failure after the stream began: Ollama's {"error": ...} as the last line."""
    err = stream_failure(exc)
    return json.dumps({"error": err.message if err is not None else MODEL_FAILED}) + "\n"


class OllamaServing(Serving):
    def __init__(self, starter: Starter, limits: Limits, engine: Engine) -> None:
        super().__init__(starter, limits)
        self.engine = engine

    # --- names and the pool -------------------------------------------------------------------------------------

    async def name(self, requested: str) -> str:
        """The model as the client named it; Ollama's clients add ":latest" to names without a tag."""
        if not requested:
            raise APIError(400, "model is required")
        base, _, tag = requested.rpartition(":")
        if tag != "latest" or not base or self._known(requested):
            return requested
        models = await self.engine.refresh_models()
        return base if base in models or self._known(base) else requested

    def _known(self, name: str) -> bool:
        profiles = self.starter.profiles
        return self.engine.pool.get(name) is not None or (profiles is not None and profiles.get(name) is not None)

    def target(self, model: str) -> str:
        return resolve_target(self.starter.profiles, model).model

    async def keep(self, target: str, seconds: float | None) -> None:
        """The request's keep_alive onto the pool (this server's models; a remote one decides its own)."""
        if seconds is not None:
            await self.engine.pool.keep_alive(target, seconds)

    def _loaded(self, target: str) -> bool:
        entry = self.engine.pool.get(target)
        return entry is not None and entry.loaded is not None

    def _load_seconds(self, target: str, was_loaded: bool) -> float:
        entry = self.engine.pool.get(target)
        return entry.load_seconds if entry is not None and not was_loaded else 0.0

    async def load_or_unload(self, req: Generating, received: float) -> dict[str, Any]:
        """A request with nothing to say loads the model (or with keep_alive 0 unloads it), as Ollama's do."""
        model = await self.name(req.model)
        target = self.target(model)
        seconds = translate.keep_alive_seconds(req.keep_alive)
        was_loaded = self._loaded(target)
        if seconds == 0:
            await self.engine.resolve(target)  # 404 for a model that does not exist
            await self.engine.pool.unload(target)
            reason = "unload"
        else:
            await self.engine.load(target)
            await self.keep(target, seconds)
            reason = "load"
        body: dict[str, Any] = {"model": model, "created_at": now_iso(), "done": True, "done_reason": reason}
        body |= {"message": {"role": "assistant", "content": ""}} if isinstance(req, ChatRequest) else {"response": ""}
        load = self._load_seconds(target, was_loaded)
        return body | {"total_duration": _ns(time.perf_counter() - received), "load_duration": _ns(load)}

    # --- chat and generate --------------------------------------------------------------------------------------

    async def start(self, req: ChatRequest | GenerateRequest, received: float) -> Run:
        model = await self.name(req.model)
        req = req.model_copy(update={"model": model})
        seconds = translate.keep_alive_seconds(req.keep_alive)
        if isinstance(req, ChatRequest):
            engine_req = translate.chat_request(req, self.limits)
        else:
            engine_req = translate.generate_request(req, self.limits)
        target = self.target(model)
        was_loaded = self._loaded(target)
        gen = await self.starter.start(engine_req)
        started = time.perf_counter()
        return Run(gen, model, target, seconds, received, started, self._load_seconds(target, was_loaded))

    async def whole(self, req: ChatRequest | GenerateRequest, run: Run, is_disconnected: Disconnected) -> BaseModel:
        await _gather(run, is_disconnected)
        await self.keep(run.target, run.keep_alive)
        reply = assemble(run.chunks)
        lps = _logprobs([lp for c in run.chunks for lp in c.logprobs]) if req.logprobs else None
        thinking = reply.reasoning or None if req.think is not False else None
        common = {"model": run.model, "created_at": now_iso(), "done": True}
        final = {
            **common,
            "done_reason": done_reason(reply.finish_reason),
            "logprobs": lps,
            **run.timings().model_dump(),
        }
        if isinstance(req, ChatRequest):
            message = OutMessage(content=reply.content, thinking=thinking, tool_calls=_calls(run.chunks) or None)
            return ChatChunk(message=message, **final)
        return GenerateChunk(response=reply.content, thinking=thinking, **final)

    async def lines(self, req: ChatRequest | GenerateRequest, run: Run) -> AsyncIterator[str]:
        """NDJSON: a line per piece of text or thinking, the tool calls once complete, then the counters."""
        chat = isinstance(req, ChatRequest)
        show_thinking = req.think is not False

        def line(text: str, thinking: str, calls: list[OutCall] | None = None, **rest: Any) -> str:
            common = {"model": run.model, "created_at": now_iso(), **rest}
            if chat:
                message = OutMessage(content=text, thinking=thinking or None, tool_calls=calls)
                body: BaseModel = ChatChunk(message=message, **common)
            else:
                body = GenerateChunk(response=text, thinking=thinking or None, **common)
            return body.model_dump_json(exclude_none=True) + "\n"

        last: GenerationChunk | None = None
        try:
            async for piece in run.pieces():
                last = piece
                thinking = piece.reasoning if show_thinking else ""
                lps = _logprobs(piece.logprobs) if req.logprobs else None
                if piece.text or thinking or lps:
                    yield line(piece.text, thinking, done=False, logprobs=lps)
        except Exception as exc:
            yield error_line(exc)
            return
        finally:
            run.gen.cancel()
        await self.keep(run.target, run.keep_alive)
        calls = _calls(run.chunks) if chat else []
        if calls:
            yield line("", "", calls, done=False)
        reason = done_reason(last.finish_reason if last else None)
        yield line("", "", done=True, done_reason=reason, **run.timings().model_dump())

    # --- embeddings ---------------------------------------------------------------------------------------------

    async def embed(self, req: EmbedRequest, received: float) -> EmbedResponse:
        model = await self.name(req.model)
        target = self.target(model)
        inputs = [req.input] if isinstance(req.input, str) else req.input
        if not inputs:
            raise APIError(400, "input must not be empty")
        was_loaded = self._loaded(target)
        try:
            result = await self.engine.embed(target, inputs, req.dimensions)
        except ModelNotFoundError:
            await only_here(self.starter.backend, target, "embeddings")
            raise
        await self.keep(target, translate.keep_alive_seconds(req.keep_alive))
        return EmbedResponse(
            model=model,
            embeddings=result.vectors.tolist(),
            total_duration=_ns(time.perf_counter() - received),
            load_duration=_ns(self._load_seconds(target, was_loaded)),
            prompt_eval_count=result.prompt_tokens,
        )


async def _gather(run: Run, is_disconnected: Disconnected) -> None:
    """The whole reply; a client that leaves cancels the generation (as replies.collect does)."""

    async def consume() -> None:
        async for _ in run.pieces():
            pass

    await until_done(consume(), run.gen.cancel, is_disconnected)
