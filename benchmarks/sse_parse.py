"""Cost of reading a routed SSE stream: N events through the routing clients' stream readers and the bench reader.

Each event arrives in its own network chunk, as a backend streaming token by token sends it. It times, for
OpenAI chat chunks and Anthropic content_block_delta events, the whole reader (SSE parsing, JSON, engine chunks)
and reports the median of --repeats runs in microseconds per event. No server: the stream is in memory.

    .venv/bin/python benchmarks/sse_parse.py --events 20000 --repeats 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from mlx_manager.bench.sse import sse_events
from mlx_manager.routing import anthropic_client, openai_client
from mlx_manager.routing.remote import RemoteGeneration


def openai_events(n: int) -> list[bytes]:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [{"index": 0, "delta": {}}]}
    events = []
    for i in range(n):
        chunk["choices"][0]["delta"] = {"content": f" token{i}"}  # type: ignore[index]
        events.append(f"data: {json.dumps(chunk)}\n\n".encode())
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(n: int) -> list[bytes]:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3}}}
    events = [f"event: message_start\ndata: {json.dumps(start)}\n\n".encode()]
    for i in range(n):
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" token{i}"}}
        events.append(f"event: content_block_delta\ndata: {json.dumps(delta)}\n\n".encode())
    return events


def response(events: list[bytes]) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


async def count(source: AsyncIterator[object]) -> int:
    n = 0
    async for _ in source:
        n += 1
    return n


READERS: dict[str, Callable[[list[bytes]], Awaitable[int]]] = {
    "routing/openai_client": lambda ev: count(openai_client._chunks(response(ev), RemoteGeneration("b", "m"))),
    "routing/anthropic_client": lambda ev: count(anthropic_client._chunks(response(ev), RemoteGeneration("b", "m"))),
    "bench/sse (openai)": lambda ev: count(sse_events(response(ev))),
}
STREAMS = {"routing/openai_client": openai_events, "routing/anthropic_client": anthropic_events}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for name, read in READERS.items():
        events = STREAMS.get(name, openai_events)(args.events)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            got = await read(events)
            times.append(time.perf_counter() - start)
        assert got >= args.events, (name, got)
        per_event = statistics.median(times) / args.events * 1e6
        print(f"{name:26s} {args.events} events: {per_event:6.2f} us/event (median of {args.repeats})")


if __name__ == "__main__":
    asyncio.run(main())
