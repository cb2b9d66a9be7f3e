"""Routed streams are read as the SSE spec says (mlx_manager.sse, on httpx-sse): an event's data may span several
`data:` lines, lines may end in CRLF, U+2028 inside data is no line break, and comments are skipped."""

from __future__ import annotations

import asyncio
import json

import httpx

from mlx_manager.api.replies import assemble
from mlx_manager.engine.types import ChatPrompt, GenerationChunk, SamplingParams
from mlx_manager.routing.anthropic_client import open_messages
from mlx_manager.routing.openai_client import open_chat
from mlx_manager.sse import aiter_json

HI = [{"role": "user", "content": "Say hi."}]


def _serve(body: bytes, content_type: str = "text/event-stream") -> httpx.AsyncClient:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, headers={"content-type": content_type}, content=body))
    return httpx.AsyncClient(transport=transport, base_url="http://backend")


def _chunks(opener: object, body: bytes, content_type: str = "text/event-stream") -> list[GenerationChunk]:
    async def main() -> list[GenerationChunk]:
        async with _serve(body, content_type) as client:
            gen = await opener(client, "b", ChatPrompt(messages=HI), SamplingParams(), "m", None)  # type: ignore[operator]
            return [c async for c in gen]

    return asyncio.run(main())


def test_openai_events_with_data_over_several_lines_crlf_and_comments() -> None:
    first = json.dumps({"choices": [{"index": 0, "delta": {"content": "Hello\u2028there"}}]})
    # One JSON object split over two data: lines; the reader joins them with a newline, which JSON allows.
    second = '{"choices": [{"index": 0,\r\ndata: "delta": {"content": " you"}, "finish_reason": "stop"}]}'
    body = f": keep-alive\r\n\r\ndata: {first}\r\n\r\ndata: {second}\r\n\r\ndata: [DONE]\r\n\r\n".encode()
    reply = assemble(_chunks(open_chat, body))
    assert reply.content == "Hello\u2028there you" and reply.finish_reason == "stop"


def test_anthropic_events_with_data_over_several_lines() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
    delta = '{"type": "content_block_delta", "index": 0,\ndata: "delta": {"type": "text_delta", "text": "hi"}}'
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 1}}
    body = (
        f"event: message_start\ndata: {json.dumps(start)}\n\n"
        f"event: content_block_delta\ndata: {delta}\n\n"
        f"event: message_delta\ndata: {json.dumps(stop)}\n\n"
    ).encode()
    reply = assemble(_chunks(open_messages, body))
    assert reply.content == "hi" and reply.finish_reason == "stop"


def test_a_stream_labelled_with_another_content_type_is_still_read() -> None:
    body = b'data: {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "length"}]}\n\n'
    reply = assemble(_chunks(open_chat, body, content_type="application/json"))
    assert reply.content == "x" and reply.finish_reason == "length"


def test_aiter_json_names_events_and_stops_at_done() -> None:
    body = b'event: ping\n\nevent: a\ndata: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\ndata: {"n": 3}\n\n'

    async def main() -> list[tuple[str, object]]:
        async with _serve(body) as client, client.stream("GET", "/") as response:
            return [item async for item in aiter_json(response)]

    assert asyncio.run(main()) == [("a", {"n": 1}), ("message", {"n": 2})]
