"""The engine's request to any Anthropic-compatible server, and its event stream back into engine chunks."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from mlx_manager.engine.types import ChatPrompt, GenerationChunk, SamplingParams, ToolCallDelta
from mlx_manager.routing.remote import (
    RemoteError,
    RemoteGeneration,
    image_url,
    open_stream,
    send_checked,
    stream_error,
)
from mlx_manager.sse import aiter_events, json_data

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; the engine's default when the client gave none
# What count_tokens takes of a messages body: no max_tokens, stream or sampling.
_COUNT_FIELDS = frozenset({"model", "messages", "system", "tools", "tool_choice", "thinking", "output_config"})


def messages_body(prompt: ChatPrompt, params: SamplingParams, model: str) -> dict[str, Any]:
    system = "\n".join(str(m.get("content") or "") for m in prompt.messages if m.get("role") == "system")
    messages: list[dict[str, Any]] = []
    urls = iter(prompt.image_urls)
    for m in prompt.messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id"),
                "content": str(m.get("content") or ""),
            }
            _append(messages, "user", [block])
        elif role == "assistant":
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m["content"]}] if m.get("content") else []
            for call in m.get("tool_calls") or []:
                function = call.get("function") or {}
                arguments = function.get("arguments") or "{}"
                args = json.loads(arguments) if isinstance(arguments, str) else arguments
                blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": args})
            _append(messages, "assistant", blocks)
        else:
            _append(messages, "user", _user_blocks(m.get("content"), urls))
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": params.max_tokens or DEFAULT_MAX_TOKENS,
        "stream": True,
    }
    # Values the client left out stay out: the backend applies its own defaults. Anthropic caps temperature at 1.
    if params.temperature is not None:
        body["temperature"] = min(params.temperature, 1.0)
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if system:
        body["system"] = system
    if params.top_k:
        body["top_k"] = params.top_k
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    if prompt.tools:
        body["tools"] = [
            {
                k: v
                for k, v in (
                    ("name", f["name"]),
                    ("description", f.get("description")),
                    ("input_schema", f.get("parameters") or {"type": "object"}),
                )
                if v is not None
            }
            for f in (t["function"] for t in prompt.tools)
        ]
        if prompt.force_tool == "required":
            body["tool_choice"] = {"type": "any", "disable_parallel_tool_use": not prompt.parallel_tool_calls}
        elif prompt.force_tool:
            body["tool_choice"] = {"type": "tool", "name": prompt.force_tool}
    if params.response_format is not None and params.response_format.get("type") == "json_schema":
        body["output_config"] = {"format": {"type": "json_schema", "schema": params.response_format["schema"]}}
    enable = prompt.template_kwargs.get("enable_thinking")
    if enable is not None:
        budget = params.max_reasoning_tokens or max(1024, (params.max_tokens or DEFAULT_MAX_TOKENS) // 2)
        body["thinking"] = {"type": "enabled", "budget_tokens": budget} if enable else {"type": "disabled"}
    return body


def _user_blocks(content: Any, urls: Iterator[str]) -> list[dict[str, Any]]:
    """Text and image blocks in order; an image goes as base64 with its media type, as Anthropic requires."""
    if not isinstance(content, list):
        return [{"type": "text", "text": str(content or "")}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "image":
            media, _, data = image_url(urls).removeprefix("data:").partition(";base64,")
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": media, "data": data}})
        elif part.get("text"):  # Anthropic refuses empty text blocks
            blocks.append({"type": "text", "text": str(part["text"])})
    return blocks


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants alternating turns: consecutive tool results (and the user text after them) share one.
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _headers(api_key: str | None) -> dict[str, str]:
    return {"anthropic-version": "2023-06-01", **({"x-api-key": api_key} if api_key else {})}


async def count_tokens(
    client: httpx.AsyncClient, backend: str, prompt: ChatPrompt, model: str, api_key: str | None
) -> int:
    """The backend's own count (POST /v1/messages/count_tokens), images and tools included."""
    body = {k: v for k, v in messages_body(prompt, SamplingParams(), model).items() if k in _COUNT_FIELDS}
    request = client.build_request("POST", "/v1/messages/count_tokens", json=body, headers=_headers(api_key))
    response = await send_checked(client, backend, request)
    try:
        return int(json.loads(await response.aread())["input_tokens"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(backend, 502, f"count_tokens answered without input_tokens: {exc}") from exc
    finally:
        await response.aclose()


async def open_messages(
    client: httpx.AsyncClient, backend: str, prompt: ChatPrompt, params: SamplingParams, model: str, api_key: str | None
) -> RemoteGeneration:
    headers = _headers(api_key)
    request = client.build_request("POST", "/v1/messages", json=messages_body(prompt, params, model), headers=headers)
    return await open_stream(client, backend, request, model, _chunks)


async def _chunks(response: httpx.Response, gen: RemoteGeneration) -> AsyncIterator[GenerationChunk]:
    calls = -1  # the engine numbers tool calls from 0 in order
    block_call: dict[int, int] = {}
    try:
        async for sse in aiter_events(response):  # read in place: this runs for every routed token
            if not isinstance(event := json_data(sse), dict):
                continue  # Anthropic's events are objects: a keep-alive or a stray [DONE] says nothing
            kind = event.get("type")
            if kind == "message_start":
                usage = event["message"].get("usage") or {}
                gen.usage.cached_tokens = int(usage.get("cache_read_input_tokens") or 0)
                gen.usage.prompt_tokens = int(usage.get("input_tokens") or 0) + gen.usage.cached_tokens
            elif kind == "content_block_start" and event["content_block"].get("type") == "tool_use":
                calls += 1
                block_call[event["index"]] = calls
                block = event["content_block"]
                yield GenerationChunk(
                    0, "", [], tool_calls=[ToolCallDelta(calls, id=block.get("id"), name=block.get("name"))]
                )
            elif kind == "content_block_delta":
                delta = event["delta"]
                if delta.get("type") == "text_delta":
                    yield GenerationChunk(0, delta.get("text", ""), [])
                elif delta.get("type") == "thinking_delta":
                    yield GenerationChunk(0, "", [], reasoning=delta.get("thinking", ""))
                elif delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                    call = ToolCallDelta(block_call.get(event["index"], calls), arguments=delta["partial_json"])
                    yield GenerationChunk(0, "", [], tool_calls=[call])
            elif kind == "message_delta":
                usage = event.get("usage") or {}
                gen.usage.completion_tokens = int(usage.get("output_tokens") or 0)
                stop = event["delta"].get("stop_reason")
                chunk = GenerationChunk(0, "", [], finish_reason=_FINISH.get(stop, "stop"))  # type: ignore[arg-type]
                chunk.stop_sequence = event["delta"].get("stop_sequence")
                yield chunk
            elif kind == "error":
                raise stream_error(gen.backend, event.get("error", event))
    finally:
        await response.aclose()
