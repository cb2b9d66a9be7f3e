"""A bounded soak: many mixed requests at fixed concurrency against one real server, counting what went wrong.

    python benchmarks/soak.py [--requests 500] [--concurrency 16] [--models-dir DIR]

After a warm-up (each model loaded, each kind run once), the mix: plain and streaming chat, forced tool calls,
json_schema output, Anthropic messages, client cancels mid-stream, and bad inputs (unknown model, invalid JSON,
bad parameters) that must get a 4xx, never a 5xx. It prints unexpected errors (goal 0), the server's memory after
the first 10 and after all counted requests (goal ratio <= 1.05) and latency percentiles, and writes
benchmarks/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from mlx_manager.testing.server import run_server
from mlx_manager.testing.tiny_models import write_tiny_models

ROOT = Path(__file__).resolve().parents[1]
MODELS = ["tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3"]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 10}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["city", "n"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}]
KINDS = ["chat", "stream", "tools", "schema", "anthropic", "cancel", "bad_model", "bad_json", "bad_param"]
EXPECTED = {"bad_model": 404, "bad_json": 400, "bad_param": 400}


def _chat(model: str, rng: random.Random, **extra: Any) -> dict[str, Any]:
    words = " ".join(rng.choice(["sun", "rain", "city", "river", "code", "tea"]) for _ in range(rng.randint(3, 40)))
    body = {"model": model, "messages": [{"role": "user", "content": words}], "max_tokens": rng.randint(4, 48)}
    body.update(extra)
    if model == "tiny-qwen3":
        body["reasoning_effort"] = "none"
    return body


async def one(client: httpx.AsyncClient, kind: str, rng: random.Random) -> tuple[str, int, float, str | None]:
    """(kind, status, seconds, problem or None)."""
    model = rng.choice(MODELS)
    start = time.perf_counter()
    try:
        if kind == "stream" or kind == "cancel":
            body = _chat(model, rng, stream=True, max_tokens=200 if kind == "cancel" else rng.randint(4, 48))
            async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                lines = 0
                async for line in resp.aiter_lines():
                    lines += line.startswith("data:")
                    if kind == "cancel" and lines >= 3:
                        break  # the client leaves mid-stream; the server must cancel and carry on
                status = resp.status_code
                done = kind == "cancel" or lines > 1
            return kind, status, time.perf_counter() - start, None if status == 200 and done else f"stream {status}"
        if kind == "anthropic":
            body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
            resp = await client.post("/v1/messages", json=body)
        elif kind == "tools":
            resp = await client.post(
                "/v1/chat/completions", json=_chat(model, rng, tools=TOOLS, tool_choice="required", max_tokens=80)
            )
        elif kind == "schema":
            fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}
            resp = await client.post("/v1/chat/completions", json=_chat(model, rng, response_format=fmt, max_tokens=80))
        elif kind == "bad_model":
            resp = await client.post("/v1/chat/completions", json=_chat("no-such-model", rng))
        elif kind == "bad_json":
            resp = await client.post(
                "/v1/chat/completions",
                content=b'{"model": "tiny-llama", "messages": [',
                headers={"content-type": "application/json"},
            )
        elif kind == "bad_param":
            resp = await client.post("/v1/chat/completions", json=_chat(model, rng, temperature=7))
        else:
            resp = await client.post("/v1/chat/completions", json=_chat(model, rng))
    except httpx.HTTPError as exc:
        return kind, 0, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    want = EXPECTED.get(kind, 200)
    problem = None if resp.status_code == want else f"{kind}: {resp.status_code} (wanted {want}) {resp.text[:200]}"
    if problem is None and kind == "schema":
        try:
            json.loads(resp.json()["choices"][0]["message"]["content"])
        except (ValueError, KeyError, TypeError):
            problem = "schema: output is not JSON"
    return kind, resp.status_code, seconds, problem


async def soak(base_url: str, pid: int, requests: int, concurrency: int, seed: int, warmup: int) -> dict[str, Any]:
    rng = random.Random(seed)
    kinds = [KINDS[i % len(KINDS)] for i in range(requests)]
    rng.shuffle(kinds)
    warm = [KINDS[i % len(KINDS)] for i in range(warmup)]
    proc = psutil.Process(pid)
    results: list[tuple[str, int, float, str | None]] = []
    rss_after_10 = 0
    queue: asyncio.Queue[str] = asyncio.Queue()
    for kind in kinds:
        queue.put_nowait(kind)

    async def worker(client: httpx.AsyncClient, wrng: random.Random) -> None:
        nonlocal rss_after_10
        while not queue.empty():
            results.append(await one(client, queue.get_nowait(), wrng))
            if len(results) == 10:
                rss_after_10 = proc.memory_info().rss
            if len(results) % 100 == 0:
                mem = (await client.get("/admin/memory")).json()
                checkpoints[len(results)] = {k: round(v / 1e6, 1) for k, v in mem.items() if k != "mlx_peak_bytes"}

    checkpoints: dict[int, dict[str, float]] = {}

    async with httpx.AsyncClient(base_url=base_url, timeout=300) as client:
        # Warm-up, not counted: every model loaded, each kind's one-time setup done (grammar tokenizer wrap), and
        # the prefix caches filled to their budget, so what grows afterwards grows per request.
        for model in MODELS:
            for kind in ("chat", "tools", "schema"):
                await one(client, kind, random.Random(model))
        warm_queue: asyncio.Queue[str] = asyncio.Queue()
        for kind in warm:
            warm_queue.put_nowait(kind)

        async def warm_worker(wrng: random.Random) -> None:
            while not warm_queue.empty():
                await one(client, warm_queue.get_nowait(), wrng)

        await asyncio.gather(*(warm_worker(random.Random(-seed - i)) for i in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(client, random.Random(seed + i)) for i in range(concurrency)))
        wall = time.perf_counter() - started
    await asyncio.sleep(1.0)  # let cancelled sequences leave the batch
    rss_end = proc.memory_info().rss
    latencies = sorted(r[2] for r in results)
    problems = [r[3] for r in results if r[3]]
    return {
        "requests": len(results),
        "warmup_requests": warmup,
        "concurrency": concurrency,
        "wall_seconds": round(wall, 1),
        "by_kind": dict(Counter(r[0] for r in results)),
        "status_counts": {str(k): v for k, v in Counter(r[1] for r in results).items()},
        "unexpected_errors": len(problems),
        "problems": problems[:20],
        "server_5xx": sum(1 for r in results if r[1] >= 500),
        "rss_after_10_mb": round(rss_after_10 / 1e6, 1),
        "rss_end_mb": round(rss_end / 1e6, 1),
        "rss_ratio": round(rss_end / rss_after_10, 3) if rss_after_10 else None,
        "memory_mb_every_100": checkpoints,
        "latency_p50_s": round(statistics.median(latencies), 3),
        "latency_p99_s": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, default=None)
    # The prefix cache grows by design up to its budget (1 GiB a model by default); a small one fills early, so
    # growth past it would be a leak.
    parser.add_argument("--prefix-cache-mb", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500, help="uncounted requests first (fill the caches)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    models_dir = (
        args.models_dir
        or next(iter(write_tiny_models(ROOT / ".cache" / "test-assets" / "tiny-models").values())).parent
    )
    env = {"MLX_MANAGER_PREFIX_CACHE_BYTES": str(args.prefix_cache_mb << 20)}
    with (
        tempfile.TemporaryDirectory() as home,
        run_server(Path(home), ["--model-dir", str(models_dir)], env=env) as srv,
    ):
        report = asyncio.run(soak(srv.base_url, srv.proc.pid, args.requests, args.concurrency, args.seed, args.warmup))
    console = Console()
    table = Table(title=f"soak: {report['requests']} mixed requests at concurrency {report['concurrency']}")
    for key in (
        "unexpected_errors",
        "server_5xx",
        "rss_after_10_mb",
        "rss_end_mb",
        "rss_ratio",
        "latency_p50_s",
        "latency_p99_s",
        "wall_seconds",
    ):
        table.add_row(key, str(report[key]))
    console.print(table)
    console.print(f"statuses: {report['status_counts']}; kinds: {report['by_kind']}")
    for n, mem in report["memory_mb_every_100"].items():
        console.print(f"after {n}: " + ", ".join(f"{k.removesuffix('_bytes')} {v} MB" for k, v in mem.items()))
    for problem in report["problems"]:
        console.print(f"[red]{problem}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
