"""Drive an OpenAI-compatible /v1/completions endpoint with streaming requests and time every token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from mlx_manager.bench.sse import FAILURES, failure, post_events


@dataclass
class RequestResult:
    ok: bool
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    completion_tokens: int = 0
    error: str = ""


@dataclass
class Target:
    base_url: str
    model: str
    api_key: str | None = None
    ignore_eos: bool = False
    timeout: float = 600.0


async def one_request(client: httpx.AsyncClient, target: Target, prompt: str, max_tokens: int) -> RequestResult:
    body: dict[str, object] = {
        "model": target.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.ignore_eos:
        body["ignore_eos"] = True
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    start = time.perf_counter()
    last = start
    result = RequestResult(ok=False)
    chunks = 0
    try:
        async for _, event in post_events(client, f"{target.base_url}/v1/completions", body, headers, 200):
            usage = event.get("usage")
            if usage:
                result.completion_tokens = int(usage.get("completion_tokens") or 0)
            text = "".join(c.get("text") or "" for c in event.get("choices") or [])
            if not text:
                continue
            now = time.perf_counter()
            if chunks == 0:
                result.ttft = now - start
            else:
                result.itl.append(now - last)
            last = now
            chunks += 1
    except FAILURES as exc:
        result.error = failure(exc)
        return result
    result.latency = time.perf_counter() - start
    result.completion_tokens = result.completion_tokens or chunks
    result.ok = chunks > 0
    return result


async def run_level(
    target: Target, prompts: list[str], max_tokens: int, concurrency: int, on_done: Callable[[], None]
) -> tuple[list[RequestResult], float]:
    """Send all prompts with at most `concurrency` in flight; returns results and wall time."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)
    results: list[RequestResult] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(timeout=target.timeout, limits=limits) as client:

        async def worker() -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                results.append(await one_request(client, target, prompt, max_tokens))
                on_done()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return results, wall
