"""OpenAI requests to engine calls and engine output to OpenAI responses. No MLX here."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from mlx_manager.api.errors import APIError, error_body, from_engine_error
from mlx_manager.api.images import ImageLimits, attach_images, content, url_part
from mlx_manager.api.openai.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
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
    SamplingFields,
    TokenLogprobOut,
    ToolCall,
    TopLogprob,
    UsageOut,
)
from mlx_manager.api.replies import Disconnected, api_finish, assemble, collect
from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import EngineError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import (
    ChatPrompt,
    GenerationChunk,
    SamplingParams,
    TextPrompt,
    TokenLogprob,
    Usage,
)
from mlx_manager.manager.profiles import ProfileLookup, resolve_target

log = logging.getLogger(__name__)


class Limits:
    def __init__(self, max_n: int, max_stop: int, images: ImageLimits | None = None) -> None:
        self.max_n = max_n
        self.max_stop = max_stop
        self.images = images or ImageLimits()


def _unsupported(param: str, why: str) -> APIError:
    return APIError(400, f"'{param}' is not supported by this server yet: {why}", param=param, code="unsupported")


def sampling_params(
    req: SamplingFields, limits: Limits, *, max_tokens: int | None, logprobs: bool, top_logprobs: int
) -> SamplingParams:
    if req.n > limits.max_n:
        raise APIError(400, f"n must be at most {limits.max_n}, got {req.n}.", param="n")
    stops = req.stop_list()
    if len(stops) > limits.max_stop:
        raise APIError(400, f"At most {limits.max_stop} stop sequences are allowed.", param="stop")
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        top_k=None if req.top_k is None else max(req.top_k, 0),
        min_p=req.min_p,
        seed=req.seed,
        stop=tuple(stops),
        presence_penalty=req.presence_penalty,
        frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty,
        logit_bias={int(k): v for k, v in (req.logit_bias or {}).items()},
        logprobs=logprobs,
        top_logprobs=top_logprobs,
        ignore_eos=req.ignore_eos,
    )


def _message_dict(msg: ChatMessage, index: int) -> dict[str, Any]:
    data = msg.model_dump(exclude_none=True)
    if isinstance(msg.content, list):
        parts: list[dict[str, Any]] = []
        for j, part in enumerate(msg.content):
            param = f"messages.{index}.content.{j}"
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
            elif part.type == "image_url" and msg.role == "user":
                parts.append(url_part((part.model_extra or {}).get("image_url"), param, "image_url"))
            else:
                raise APIError(
                    400,
                    f"Content parts of type '{part.type}' are not supported in {msg.role} messages; send text"
                    " (and image_url parts in user messages, for vision models).",
                    param=param,
                )
        data["content"] = content(parts, "")
    if msg.role == "developer":  # templates know "system"; OpenAI's newer name means the same
        data["role"] = "system"
    return data


def _forced_tool(req: ChatCompletionRequest) -> str | None:
    """None for auto/none, "required", or the name of the function that must be called."""
    choice = req.tool_choice
    if choice in (None, "none", "auto"):
        return None
    if not req.tools:
        raise APIError(400, "tool_choice requires tools.", param="tool_choice")
    if choice == "required":
        return "required"
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        return str(choice["function"]["name"])
    raise APIError(
        400,
        "tool_choice must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}.",
        param="tool_choice",
    )


def response_format(req: ChatCompletionRequest) -> dict[str, Any] | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    schema = (fmt.json_schema or {}).get("schema")
    if not isinstance(schema, dict):
        raise APIError(
            400, "response_format json_schema needs json_schema.schema (an object).", param="response_format"
        )
    return {"type": "json_schema", "schema": schema}


def template_kwargs(req: ChatCompletionRequest) -> dict[str, Any]:
    """chat_template_kwargs, plus reasoning_effort: templates that know it (gpt-oss) read it; "none"/"minimal"
    switch thinking off in templates with an enable_thinking flag (Qwen3, GLM-4.5) unless the client set it."""
    kwargs = dict(req.chat_template_kwargs or {})
    if req.reasoning_effort is not None:
        kwargs.setdefault("reasoning_effort", req.reasoning_effort)
        if req.reasoning_effort in ("none", "minimal"):
            kwargs.setdefault("enable_thinking", False)
    return kwargs


def chat_prompt(req: ChatCompletionRequest) -> ChatPrompt:
    force_tool = _forced_tool(req)
    tools = [] if req.tool_choice == "none" else list(req.tools or [])
    for i, tool in enumerate(tools):
        if (
            tool.get("type") != "function"
            or not isinstance(tool.get("function"), dict)
            or "name" not in tool["function"]
        ):
            raise APIError(
                400, "Each tool must be {'type': 'function', 'function': {'name': ...}}.", param=f"tools.{i}"
            )
    if force_tool is not None and response_format(req) is not None:
        raise APIError(400, "Use either a forced tool_choice or response_format, not both.", param="response_format")
    if req.store:
        raise _unsupported("store", "completions are not stored.")
    if req.continue_final_message and req.messages[-1].role != "assistant":
        raise APIError(400, "continue_final_message needs an assistant message last.", param="continue_final_message")
    return ChatPrompt(
        messages=[_message_dict(m, i) for i, m in enumerate(req.messages)],
        template_kwargs=template_kwargs(req),
        tools=tools or None,
        parse_tool_calls=bool(tools),
        parallel_tool_calls=req.parallel_tool_calls is not False,
        force_tool=force_tool,
        continue_final=req.continue_final_message,
    )


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


def explicit_fields(req: SamplingFields) -> set[str]:
    """The sampling values the client set itself (a profile's defaults fill in the rest)."""
    fields = set(req.model_fields_set)
    if "max_completion_tokens" in fields:
        fields.add("max_tokens")
    return fields


class OpenAIServing:
    def __init__(self, engine: Engine, limits: Limits, profiles: ProfileLookup | None = None) -> None:
        self.engine = engine
        self.route = engine.generate  # the app swaps in its router's, which may send the request elsewhere
        self.routed: Callable[[str], bool] = lambda _model: False  # likewise: whether a rule sends it elsewhere
        self.limits = limits
        self.profiles = profiles

    # --- chat ---------------------------------------------------------------------------------

    async def start_chat(self, req: ChatCompletionRequest) -> Generation:
        target = resolve_target(self.profiles, req.model)
        max_tokens = req.max_completion_tokens or req.max_tokens
        params = replace(
            sampling_params(
                req, self.limits, max_tokens=max_tokens, logprobs=req.logprobs, top_logprobs=req.top_logprobs or 0
            ),
            response_format=response_format(req),
            max_reasoning_tokens=req.max_reasoning_tokens,
        )
        params = target.params(params, explicit_fields(req))
        routed = self.routed(target.model)
        prompt = target.prompt(
            await attach_images(self.engine, target.model, chat_prompt(req), self.limits.images, routed)
        )
        return await self.route(target.model, prompt, params, n=req.n, priority=req.priority)

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
        return ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=req.model,
            choices=choices,
            usage=usage_out(gen.usage),
        )

    async def chat_stream(self, req: ChatCompletionRequest, gen: Generation) -> AsyncIterator[str]:
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(choices: list[ChunkChoice], usage: UsageOut | None = None) -> str:
            body = ChatCompletionChunk(id=cid, created=created, model=req.model, choices=choices, usage=usage)
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

    def _completion_prompts(self, req: CompletionRequest) -> list[TextPrompt]:
        p = req.prompt
        if isinstance(p, str):
            return [TextPrompt(text=p)]
        if not p:
            raise APIError(400, "The prompt is empty.", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [TextPrompt(token_ids=tuple(p))]  # type: ignore[arg-type]
        if all(isinstance(x, str) for x in p):
            return [TextPrompt(text=str(x)) for x in p]
        return [TextPrompt(token_ids=tuple(x)) for x in p]  # type: ignore[arg-type]

    async def start_completion(self, req: CompletionRequest) -> list[Generation]:
        if req.suffix:
            raise _unsupported("suffix", "fill-in-the-middle needs a model-specific template.")
        if req.best_of not in (None, req.n):
            raise _unsupported("best_of", "only best_of == n is supported.")
        if req.echo and req.stream:
            raise _unsupported("echo", "echo is only supported without streaming.")
        if req.echo and req.logprobs is not None:
            raise _unsupported("echo", "echo with logprobs would need logprobs of the prompt tokens.")
        target = resolve_target(self.profiles, req.model)
        params = sampling_params(
            req,
            self.limits,
            max_tokens=req.max_tokens,
            logprobs=req.logprobs is not None,
            top_logprobs=req.logprobs or 0,
        )
        params = target.params(params, explicit_fields(req))
        gens: list[Generation] = []
        try:
            for prompt in self._completion_prompts(req):
                gens.append(await self.route(target.model, prompt, params, n=req.n, priority=req.priority))
        except BaseException:
            for g in gens:
                g.cancel()
            raise
        return gens

    async def completion(
        self, req: CompletionRequest, gens: list[Generation], is_disconnected: Disconnected
    ) -> Completion:
        choices: list[CompletionChoice] = []
        usage = Usage()
        for p_index, gen in enumerate(gens):
            by_index = await collect(gen, is_disconnected)
            usage.prompt_tokens += gen.usage.prompt_tokens
            usage.completion_tokens += gen.usage.completion_tokens
            usage.cached_tokens += gen.usage.cached_tokens
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
        return Completion(
            id=f"cmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=req.model,
            choices=choices,
            usage=usage_out(usage),
        )

    def _echo_text(self, req: CompletionRequest, p_index: int) -> str:
        p = req.prompt
        if isinstance(p, str):
            return p
        if all(isinstance(x, str) for x in p):
            return str(p[p_index])
        raise _unsupported("echo", "echo needs text prompts, not token ids.")

    async def completion_stream(self, req: CompletionRequest, gens: list[Generation]) -> AsyncIterator[str]:
        cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        usage = Usage()
        offsets: dict[int, int] = {}
        try:
            for p_index, gen in enumerate(gens):
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
                    body = Completion(id=cid, created=created, model=req.model, choices=[choice])
                    yield body.model_dump_json(exclude_none=True)
                usage.prompt_tokens += gen.usage.prompt_tokens
                usage.completion_tokens += gen.usage.completion_tokens
                usage.cached_tokens += gen.usage.cached_tokens
        except Exception as exc:
            yield stream_error(exc)
            yield "[DONE]"
            return
        finally:
            for gen in gens:
                gen.cancel()
        if req.stream_options and req.stream_options.include_usage:
            body = Completion(id=cid, created=created, model=req.model, choices=[], usage=usage_out(usage))
            yield body.model_dump_json()
        yield "[DONE]"


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
    log.error("Generation failed mid-stream: %s", exc)
    err = from_engine_error(exc) if isinstance(exc, EngineError) else None
    if err is None:
        return json.dumps(error_body("The model failed while generating; see the server log.", "server_error"))
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
