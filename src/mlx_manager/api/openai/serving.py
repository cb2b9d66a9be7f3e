"""Engine output to OpenAI chat and text completions, whole or streamed (requests: translate.py). No MLX here."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.api.errors import error_body
from mlx_manager.api.openai import translate
from mlx_manager.api.openai.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FunctionCall,
    PromptTokensDetails,
    TokenLogprobOut,
    ToolCall,
    TopLogprob,
    UsageOut,
)
from mlx_manager.api.replies import Disconnected, api_finish, assemble, collect
from mlx_manager.api.request.start import Serving
from mlx_manager.api.request.streaming import MODEL_FAILED, stream_failure
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk, TokenLogprob, Usage


def usage_out(usage: Usage) -> UsageOut:
    return UsageOut(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


def _chat_logprobs(items: list[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=lp.token,
                logprob=lp.logprob,
                bytes=lp.bytes,
                top_logprobs=[TopLogprob(token=t, logprob=v, bytes=list(t.encode())) for t, _i, v in lp.top],
            )
            for lp in items
        ]
    )


@dataclass
class Completions:
    """A text completion request under way: one generation per prompt, answered as one (api/request/answer)."""

    gens: list[Generation]
    usage: Usage = field(default_factory=Usage)  # the prompts' usage, added up as each generation is read

    @property
    def backend(self) -> str:
        return self.gens[0].backend  # every prompt names the same model, so the same backend

    def cancel(self) -> None:
        for gen in self.gens:
            gen.cancel()

    async def wait_admitted(self) -> None:
        """Every prompt left the queue (api/request/limits: a queue timeout is still a 503 before a stream)."""
        for gen in self.gens:
            await gen.wait_admitted()

    def count(self, gen: Generation) -> None:
        self.usage.prompt_tokens += gen.usage.prompt_tokens
        self.usage.completion_tokens += gen.usage.completion_tokens
        self.usage.cached_tokens += gen.usage.cached_tokens


class OpenAIServing(Serving):
    # --- chat ---------------------------------------------------------------------------------

    async def start_chat(self, req: ChatCompletionRequest) -> Generation:
        return await self.starter.start(translate.chat_request(req, self.limits))

    async def chat(self, req: ChatCompletionRequest, gen: Generation, is_disconnected: Disconnected) -> ChatCompletion:
        by_index = await collect(gen, is_disconnected)
        choices = []
        for index in range(req.n):
            chunks = by_index.get(index, [])
            logprobs = [lp for c in chunks for lp in c.logprobs]
            choices.append(
                ChatChoice(
                    index=index,
                    message=assistant_message(chunks, req.parallel_tool_calls is not False),
                    finish_reason=_finish(chunks),
                    logprobs=_chat_logprobs(logprobs) if req.logprobs else None,
                )
            )
        return ChatCompletion(**_head("chatcmpl", req.model), choices=choices, usage=usage_out(gen.usage))

    async def chat_stream(self, req: ChatCompletionRequest, gen: Generation) -> AsyncIterator[str]:
        head = _head("chatcmpl", req.model)
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(choices: list[ChunkChoice], usage: UsageOut | None = None) -> str:
            body = ChatCompletionChunk(**head, choices=choices, usage=usage)
            return body.model_dump_json(exclude_none=usage is None)

        for index in range(req.n):
            yield chunk([ChunkChoice(index=index, delta=Delta(role="assistant", content=""))])
        try:
            async for piece in gen:
                if piece.finish_reason == "cancelled":
                    continue
                delta = stream_delta(piece, req.parallel_tool_calls is not False)
                choice = ChunkChoice(
                    index=piece.index,
                    delta=delta,
                    finish_reason=api_finish(piece.finish_reason),
                    logprobs=_chat_logprobs(piece.logprobs) if req.logprobs and piece.logprobs else None,
                )
                if (
                    delta.content
                    or delta.reasoning_content
                    or delta.tool_calls
                    or piece.finish_reason
                    or choice.logprobs
                ):
                    yield chunk([choice])
        except Exception as exc:
            yield stream_error(exc)
            yield "[DONE]"
            return
        if include_usage:
            yield chunk([], usage_out(gen.usage))
        yield "[DONE]"

    # --- text completions ---------------------------------------------------------------------

    async def start_completion(self, req: CompletionRequest) -> Completions:
        return Completions(await self.starter.start_all(translate.completion_requests(req, self.limits)))

    async def completion(self, req: CompletionRequest, run: Completions, is_disconnected: Disconnected) -> Completion:
        choices: list[CompletionChoice] = []
        for p_index, gen in enumerate(run.gens):
            by_index = await collect(gen, is_disconnected)
            run.count(gen)
            prefix = self._echo_text(req, p_index) if req.echo else ""
            for index in range(req.n):
                chunks = by_index.get(index, [])
                lps = [lp for c in chunks for lp in c.logprobs]
                choices.append(
                    CompletionChoice(
                        index=p_index * req.n + index,
                        text=prefix + "".join(c.text for c in chunks),
                        finish_reason=_finish(chunks),
                        logprobs=_completion_logprobs(lps, len(prefix)) if req.logprobs is not None else None,
                    )
                )
        return Completion(**_head("cmpl", req.model), choices=choices, usage=usage_out(run.usage))

    def _echo_text(self, req: CompletionRequest, p_index: int) -> str:
        p = req.prompt
        if isinstance(p, str):
            return p
        if all(isinstance(x, str) for x in p):
            return str(p[p_index])
        raise translate.unsupported("echo", "echo needs text prompts, not token ids.")

    async def completion_stream(self, req: CompletionRequest, run: Completions) -> AsyncIterator[str]:
        head = _head("cmpl", req.model)
        offsets: dict[int, int] = {}
        try:
            for p_index, gen in enumerate(run.gens):
                async for piece in gen:
                    if piece.finish_reason == "cancelled":
                        continue
                    if not (piece.text or piece.finish_reason):
                        continue
                    index = p_index * req.n + piece.index
                    offset = offsets.get(index, 0)
                    offsets[index] = offset + len(piece.text)
                    choice = CompletionChoice(
                        index=index,
                        text=piece.text,
                        finish_reason=api_finish(piece.finish_reason),
                        logprobs=_completion_logprobs(piece.logprobs, offset) if req.logprobs is not None else None,
                    )
                    body = Completion(**head, choices=[choice])
                    yield body.model_dump_json(exclude_none=True)
                run.count(gen)
        except Exception as exc:
            yield stream_error(exc)
            yield "[DONE]"
            return
        finally:
            run.cancel()
        if req.stream_options and req.stream_options.include_usage:
            body = Completion(**head, choices=[], usage=usage_out(run.usage))
            yield body.model_dump_json()
        yield "[DONE]"


def _head(kind: str, model: str) -> dict[str, Any]:
    """The id, creation time and model a chat or text completion carries, in every chunk of a stream too."""
    return {"id": f"{kind}-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}


def assistant_message(chunks: list[GenerationChunk], parallel: bool) -> AssistantMessage:
    reply = assemble(chunks, parallel)
    tool_calls = [
        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments or "{}")) for c in reply.tool_calls
    ]
    return AssistantMessage(
        content=reply.content if reply.content or not tool_calls else None,
        reasoning_content=reply.reasoning or None,
        tool_calls=tool_calls or None,
    )


def stream_delta(piece: GenerationChunk, parallel: bool) -> Delta:
    calls = [
        DeltaToolCall(
            index=d.index,
            id=d.id,
            type="function" if d.id else None,
            function=DeltaFunction(name=d.name, arguments=d.arguments if d.id is None else ""),
        )
        for d in piece.tool_calls
        if parallel or d.index == 0
    ]
    return Delta(content=piece.text or None, reasoning_content=piece.reasoning or None, tool_calls=calls or None)


def stream_error(exc: Exception) -> str:
    """An error that happens after streaming began: OpenAI's error object as a final data event."""
    err = stream_failure(exc)
    if err is None:
        return json.dumps(error_body(MODEL_FAILED, "server_error"))
    return json.dumps(error_body(err.message, err.type, err.param, err.code))


def _finish(chunks: list[GenerationChunk]) -> str | None:
    return assemble(chunks).finish_reason


def _completion_logprobs(items: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    out = CompletionLogprobs()
    pos = offset
    for lp in items:
        out.tokens.append(lp.token)
        out.token_logprobs.append(lp.logprob)
        out.top_logprobs.append({t: v for t, _i, v in lp.top} if lp.top else None)
        out.text_offset.append(pos)
        pos += len(lp.token)
    return out
