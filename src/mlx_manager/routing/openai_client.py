"""The engine's request to any OpenAI-compatible server (vLLM, SGLang, llama.cpp, OpenAI, another MLX Manager),
and its SSE stream back into engine chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from mlx_manager.engine.types import ChatPrompt, GenerationChunk, SamplingParams, ToolCallDelta
from mlx_manager.routing.remote import RemoteGeneration, image_url, open_stream, stream_error
from mlx_manager.sse import END, aiter_events, json_data

_FINISH = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls"}


def chat_body(prompt: ChatPrompt, params: SamplingParams, model: str) -> dict[str, Any]:
    # Template switches only this server understands stay here; reasoning_effort is the portable one.
    urls = iter(prompt.image_urls)
    messages = [
        {k: _parts(v, urls) if k == "content" else v for k, v in m.items() if k != "reasoning_content"}
        for m in prompt.messages
    ]
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    # Values the client left out stay out: the backend applies its own model's defaults.
    optional = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or None,
        "min_p": params.min_p or None,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty or None,
        "frequency_penalty": params.frequency_penalty or None,
        "logit_bias": {str(k): v for k, v in params.logit_bias.items()} or None,
        "reasoning_effort": prompt.template_kwargs.get("reasoning_effort"),
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if params.response_format is not None:
        fmt = params.response_format
        body["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}
            if fmt.get("type") == "json_schema"
            else {"type": "json_object"}
        )
    if prompt.tools:
        body["tools"] = prompt.tools
        body["parallel_tool_calls"] = prompt.parallel_tool_calls
        if prompt.force_tool == "required":
            body["tool_choice"] = "required"
        elif prompt.force_tool:
            body["tool_choice"] = {"type": "function", "function": {"name": prompt.force_tool}}
    return body


def _parts(content: Any, urls: Iterator[str]) -> Any:
    # The engine's {"type": "image"} parts back into OpenAI's, with the image data they stand for.
    if not isinstance(content, list):
        return content
    return [
        {"type": "image_url", "image_url": {"url": image_url(urls)}} if p.get("type") == "image" else p for p in content
    ]


async def open_chat(
    client: httpx.AsyncClient, backend: str, prompt: ChatPrompt, params: SamplingParams, model: str, api_key: str | None
) -> RemoteGeneration:
    """The chat streamed from the backend; a failure before any output raises RemoteError (see open_stream)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = client.build_request("POST", "/chat/completions", json=chat_body(prompt, params, model), headers=headers)
    return await open_stream(client, backend, request, model, _chunks)


async def _chunks(response: httpx.Response, gen: RemoteGeneration) -> AsyncIterator[GenerationChunk]:
    final: GenerationChunk | None = None  # held back: the usage event comes after it
    try:
        async for sse in aiter_events(response):  # read in place: this runs for every routed token
            if (event := json_data(sse)) is END:
                break
            if event is None:
                continue
            if "error" in event:
                raise stream_error(gen.backend, event["error"])
            if event.get("usage"):
                _usage(gen, event["usage"])
            for choice in event.get("choices") or []:
                chunk = _chunk(choice)
                if chunk is not None and chunk.finish_reason is not None:
                    final = chunk
                elif chunk is not None:
                    yield chunk
        if final is not None:
            yield final
    finally:
        await response.aclose()


def _chunk(choice: dict[str, Any]) -> GenerationChunk | None:
    delta = choice.get("delta") or {}
    calls: list[ToolCallDelta] = []
    for tc in delta.get("tool_calls") or []:
        index, function = int(tc.get("index", 0)), tc.get("function") or {}
        arguments = function.get("arguments") or ""
        if tc.get("id"):  # a call's first delta names it; arguments in it become a delta of their own
            calls.append(ToolCallDelta(index, id=tc["id"], name=function.get("name")))
            if arguments:
                calls.append(ToolCallDelta(index, arguments=arguments))
        elif arguments:
            calls.append(ToolCallDelta(index, arguments=arguments))
    reason = choice.get("finish_reason")
    chunk = GenerationChunk(
        index=int(choice.get("index", 0)),
        text=delta.get("content") or "",
        token_ids=[],
        reasoning=delta.get("reasoning_content") or delta.get("reasoning") or "",
        tool_calls=calls,
        finish_reason=_FINISH.get(reason, "stop") if reason else None,  # type: ignore[arg-type]
    )
    if not (chunk.text or chunk.reasoning or chunk.tool_calls or chunk.finish_reason):
        return None
    return chunk


def _usage(gen: RemoteGeneration, usage: dict[str, Any]) -> None:
    gen.usage.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    gen.usage.completion_tokens = int(usage.get("completion_tokens") or 0)
    details = usage.get("prompt_tokens_details") or {}
    gen.usage.cached_tokens = int(details.get("cached_tokens") or 0)
