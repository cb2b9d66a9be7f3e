"""An agent session's requests in the OpenAI (/v1/chat/completions, tools + tool messages) and Anthropic
(/v1/messages, tool_use / tool_result blocks) wire formats, and one streamed request timed to its first output."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from mlx_manager.bench.agent import AgentSession
from mlx_manager.bench.sse import FAILURES, failure, post_events

FORMATS = ("openai", "anthropic")
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages"}


@dataclass
class TurnResult:
    ok: bool
    ttft: float = 0.0
    latency: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    # No output event came (the reply was empty or held back whole): TTFT is then the end of the stream.
    ttft_at_end: bool = False
    error: str = ""
    text: str = ""  # the reply's text, which a real client sends back in its next request
    # The reply's tool calls as the server parsed them: id, name and arguments (JSON text as streamed).
    calls: list[dict[str, str]] = field(default_factory=list)


def system_text(session: AgentSession, turn: int, volatile: bool) -> str:
    return f"{session.volatile_line(turn)}\n{session.system}" if volatile else session.system


def openai_body(session: AgentSession, turn: int, model: str, max_tokens: int, volatile: bool) -> dict[str, Any]:
    """The chat completion request an OpenAI-style agent sends for request `turn` (0-based) of the session."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_text(session, turn, volatile)}]
    for step in session.turns[: turn + 1]:
        if step.assistant or step.calls:
            calls = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _json_text(c.arguments)}}
                for c in step.calls
            ]
            messages.append({"role": "assistant", "content": step.assistant or None, "tool_calls": calls})
        for call, result in zip(step.calls, step.results, strict=True):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
        if step.user:
            messages.append({"role": "user", "content": step.user})
    tools = [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in session.tools
    ]
    return {
        "model": model,
        "messages": messages,
        "tools": tools,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def anthropic_body(session: AgentSession, turn: int, model: str, max_tokens: int, volatile: bool) -> dict[str, Any]:
    """The Messages request Claude Code sends: the billing line as its own system block before the prompt."""
    system: list[dict[str, Any]] = [{"type": "text", "text": session.system, "cache_control": {"type": "ephemeral"}}]
    if volatile:
        system.insert(0, {"type": "text", "text": session.volatile_line(turn)})
    messages: list[dict[str, Any]] = []
    for step in session.turns[: turn + 1]:
        if step.assistant or step.calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": step.assistant}] if step.assistant else []
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": _json_object(c.arguments)} for c in step.calls
            ]
            messages.append({"role": "assistant", "content": blocks})
        user: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": c.id, "content": result}
            for c, result in zip(step.calls, step.results, strict=True)
        ]
        if step.user:
            user.append({"type": "text", "text": step.user})
        if user:
            messages.append({"role": "user", "content": user})
    tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in session.tools]
    return {
        "model": model,
        "system": system,
        "messages": messages,
        "tools": tools,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }


def _json_text(arguments: dict[str, Any] | str) -> str:
    """A call's arguments as OpenAI sends them: the model's own JSON text when it made the call."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _json_object(arguments: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def request_body(
    fmt: str, session: AgentSession, turn: int, model: str, max_tokens: int, volatile: bool
) -> dict[str, Any]:
    build = openai_body if fmt == "openai" else anthropic_body
    return build(session, turn, model, max_tokens, volatile)


async def send_turn(
    client: httpx.AsyncClient, base_url: str, fmt: str, body: dict[str, Any], api_key: str | None = None
) -> TurnResult:
    """Stream one request; TTFT is the first event that carries output (text, reasoning or a tool call)."""
    headers = {"anthropic-version": "2023-06-01"} if fmt == "anthropic" else {}
    if api_key:
        headers.update({"Authorization": f"Bearer {api_key}", "x-api-key": api_key})
    result = TurnResult(ok=False)
    start = time.perf_counter()
    try:
        async for name, event in post_events(client, f"{base_url}{PATHS[fmt]}", body, headers, 300):
            output = _read_openai(event, result) if fmt == "openai" else _read_anthropic(name, event, result)
            if output and not result.ttft:
                result.ttft = time.perf_counter() - start
    except FAILURES as exc:
        result.error = failure(exc)
        return result
    result.latency = time.perf_counter() - start
    if not result.ttft:
        result.ttft, result.ttft_at_end = result.latency, True
    result.ok = True
    return result


def _read_openai(event: dict[str, Any], result: TurnResult) -> bool:
    """Take usage from the event; True when it carries output."""
    if event.get("error"):
        raise ValueError(f"stream error: {event['error']}")
    usage = event.get("usage")
    if usage:
        result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        result.output_tokens = int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        result.cached_tokens = int(details.get("cached_tokens") or 0)
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        result.text += delta.get("content") or ""
        for part in delta.get("tool_calls") or []:
            index = int(part.get("index") or 0)
            while len(result.calls) <= index:
                result.calls.append({"id": "", "name": "", "arguments": ""})
            call, function = result.calls[index], part.get("function") or {}
            call["id"] = part.get("id") or call["id"]
            call["name"] = function.get("name") or call["name"]
            call["arguments"] += function.get("arguments") or ""
        if any(delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")):
            return True
    return False


def _read_anthropic(name: str, event: dict[str, Any], result: TurnResult) -> bool:
    if name == "error":
        raise ValueError(f"stream error: {event.get('error')}")
    usage = (event.get("message") or {}).get("usage") if name == "message_start" else event.get("usage")
    if usage:
        cached = int(usage.get("cache_read_input_tokens") or 0)
        fresh = int(usage.get("input_tokens") or 0) + int(usage.get("cache_creation_input_tokens") or 0)
        # message_start may come before prefill with zeros; the later message_delta has the final counts.
        if fresh + cached:
            result.prompt_tokens, result.cached_tokens = fresh + cached, cached
        result.output_tokens = int(usage.get("output_tokens") or 0) or result.output_tokens
    if name == "content_block_delta":
        delta = event.get("delta") or {}
        result.text += delta.get("text") or ""
        if delta.get("partial_json") and result.calls:
            result.calls[-1]["arguments"] += delta["partial_json"]
        return bool(delta.get("text") or delta.get("partial_json") or delta.get("thinking"))
    block = event.get("content_block") or {}
    if name == "content_block_start" and block.get("type") == "tool_use":
        result.calls.append({"id": block.get("id") or "", "name": block.get("name") or "", "arguments": ""})
        return True
    return False
