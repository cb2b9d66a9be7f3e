"""The engine's request sent to a real server (another MLX Manager on loopback) over the OpenAI and the
Anthropic protocol, and its stream turned back into engine chunks: text, tool calls, usage, failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from mlx_manager.api.replies import assemble
from mlx_manager.engine.types import ChatPrompt, GenerationChunk, SamplingParams
from mlx_manager.routing.anthropic_client import open_messages
from mlx_manager.routing.base_url import normalize_base_url
from mlx_manager.routing.openai_client import open_chat
from mlx_manager.routing.remote import RemoteError, RemoteGeneration
from mlx_manager.testing.server import ServerProcess, free_port

HI = [{"role": "user", "content": "Say hi."}]
PARAMS: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": PARAMS}}]
Opener = Callable[..., Awaitable[RemoteGeneration]]


def _run(
    base_url: str, opener: Opener, prompt: ChatPrompt, params: SamplingParams, model: str
) -> tuple[list[GenerationChunk], RemoteGeneration]:
    kind = "openai" if opener is open_chat else "anthropic"

    async def main() -> tuple[list[GenerationChunk], RemoteGeneration]:
        async with httpx.AsyncClient(base_url=normalize_base_url(kind, base_url), timeout=60) as client:
            gen = await opener(client, "peer", prompt, params, model, None)
            return [c async for c in gen], gen

    return asyncio.run(main())


@pytest.mark.parametrize("opener", [open_chat, open_messages], ids=["openai", "anthropic"])
def test_text_through_a_peer_matches_asking_it_directly(
    server: ServerProcess, client: openai.OpenAI, opener: Opener
) -> None:
    direct = client.chat.completions.create(model="tiny-llama", messages=HI, max_tokens=12, temperature=0)  # type: ignore[arg-type]
    chunks, gen = _run(
        server.base_url, opener, ChatPrompt(messages=HI), SamplingParams(max_tokens=12, temperature=0), "tiny-llama"
    )
    reply = assemble(chunks)
    assert reply.content.strip() == (direct.choices[0].message.content or "").strip()
    assert reply.finish_reason == "length" and gen.usage.completion_tokens == 12 and gen.usage.prompt_tokens > 0


@pytest.mark.parametrize("opener", [open_chat, open_messages], ids=["openai", "anthropic"])
def test_a_forced_tool_call_through_a_peer_arrives_as_engine_tool_calls(server: ServerProcess, opener: Opener) -> None:
    prompt = ChatPrompt(messages=HI, tools=TOOLS, parse_tool_calls=True, force_tool="required")
    chunks, _ = _run(server.base_url, opener, prompt, SamplingParams(max_tokens=80), "tiny-qwen2.5")
    reply = assemble(chunks)
    assert reply.finish_reason == "tool_calls" and reply.tool_calls
    call = reply.tool_calls[0]
    assert call.id and call.name == "get_weather"
    jsonschema.validate(json.loads(call.arguments), PARAMS)


def test_a_tool_round_trip_conversation_is_accepted_by_an_anthropic_peer(server: ServerProcess) -> None:
    messages = [
        *HI,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12 degrees"},
    ]
    chunks, gen = _run(
        server.base_url,
        open_messages,
        ChatPrompt(messages=messages, tools=TOOLS, parse_tool_calls=True),
        SamplingParams(max_tokens=3),
        "tiny-qwen2.5",
    )
    assert assemble(chunks).finish_reason in ("length", "tool_calls") and gen.usage.prompt_tokens > 20


@pytest.mark.parametrize("opener", [open_chat, open_messages], ids=["openai", "anthropic"])
def test_failures_before_output_raise_with_the_status(server: ServerProcess, opener: Opener) -> None:
    with pytest.raises(RemoteError) as err:
        _run(server.base_url, opener, ChatPrompt(messages=HI), SamplingParams(max_tokens=2), "no-such-model")
    assert err.value.status == 404
    assert f"from POST {server.base_url}/v1/" in str(err.value) and "peer" in str(err.value)  # where it went
    with pytest.raises(RemoteError) as refused:
        _run(
            f"http://127.0.0.1:{free_port()}",
            opener,
            ChatPrompt(messages=HI),
            SamplingParams(max_tokens=2),
            "tiny-llama",
        )
    assert refused.value.status is None
