"""Three real servers on loopback as each other's backends: routing by rule, protocol translation both ways,
fallback when one is stopped mid-run, the breaker opening and recovering, load spread, local overflow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import Api, login, register

HI: Any = [{"role": "user", "content": "Say hi."}]
# The front holds one sequence and queues none, so a burst overflows; its breakers open fast and cool quickly.
FRONT = {
    "MLX_MANAGER_MAX_WAITING": "0",
    "MLX_MANAGER_MAX_NUM_SEQS": "1",
    "MLX_MANAGER_BREAKER_FAILURES": "2",
    "MLX_MANAGER_BREAKER_COOLDOWN_SECONDS": "2",
    # No background probes: on a slow machine one could mark the stopped peer unhealthy before any request tries
    # it, and the breaker test below is about failures seen by requests.
    "MLX_MANAGER_HEALTH_CHECK_SECONDS": "0",
}


@pytest.fixture(scope="module")
def peers(
    tiny_models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    server: ServerProcess,
    embedding_server: ServerProcess,
) -> Iterator[tuple[ServerProcess, ...]]:
    """The front, and as its two peers the session's shared servers (both serve the tiny chat models; only the
    front's own state is asserted on), which saves two server starts."""
    with run_server(tmp_path_factory.mktemp("front"), ["--model-dir", str(tiny_models_dir)], env=FRONT) as front:
        yield front, server, embedding_server


@pytest.fixture(scope="module")
def admin(peers: tuple[ServerProcess, ...]) -> Api:
    front = peers[0]
    register(front, "root")
    return Api(front, login(front, "root"))


def _backend(admin: Api, name: str, kind: str, base_url: str | None, **extra: Any) -> int:
    body = {"name": name, "kind": kind, "base_url": base_url, "timeout_seconds": 10, **extra}
    return int(admin.ok("POST", "/api/routing/backends", 201, json=body)["id"])


def _rule(admin: Api, pattern: str, backends: list[int], **extra: Any) -> int:
    return int(
        admin.ok("POST", "/api/routing/rules", 201, json={"pattern": pattern, "backend_ids": backends, **extra})["id"]
    )


def _status(admin: Api) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in admin.ok("GET", "/api/routing/status")}


def test_rules_send_openai_and_anthropic_clients_to_peers_over_either_protocol(
    peers: tuple[ServerProcess, ...], admin: Api
) -> None:
    front, b, _ = peers
    b_openai = _backend(admin, "b-openai", "openai", b.base_url)
    b_anthropic = _backend(admin, "b-anthropic", "anthropic", b.base_url)
    _rule(admin, "remote-llama", [b_openai], remote_model="tiny-llama")
    _rule(admin, "claude-*", [b_anthropic], match_type="glob", remote_model="tiny-qwen2.5")
    assert admin.ok("GET", "/api/routing/test", params={"model": "claude-x"})["backends"] == ["b-anthropic"]
    assert admin.ok("GET", "/api/routing/test", params={"model": "tiny-llama"})["backends"] == ["local"]
    # An Anthropic client served by an OpenAI-protocol backend, streaming included.
    claude = anthropic.Anthropic(base_url=front.base_url, api_key="x", max_retries=0)
    out = claude.messages.create(model="remote-llama", max_tokens=5, messages=HI)
    assert out.usage.output_tokens == 5 and out.stop_reason == "max_tokens" and out.content[0].type == "text"
    with claude.messages.stream(model="remote-llama", max_tokens=4, messages=HI) as stream:
        assert stream.get_final_message().usage.output_tokens == 4
    # An OpenAI client served by an Anthropic-protocol backend, with a forced tool call.
    client = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0)
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}},
                    "required": ["a"],
                    "additionalProperties": False,
                },
            },
        }
    ]
    out2 = client.chat.completions.create(
        model="claude-3", messages=HI, tools=tools, tool_choice="required", max_tokens=40
    )
    (call,) = out2.choices[0].message.tool_calls or []
    assert call.function.name == "f" and out2.choices[0].finish_reason == "tool_calls"  # type: ignore[union-attr]
    assert out2.usage and out2.usage.completion_tokens > 0
    streamed = list(
        client.chat.completions.create(
            model="remote-llama", messages=HI, max_tokens=6, stream=True, stream_options={"include_usage": True}
        )
    )
    assert streamed[-1].usage and streamed[-1].usage.completion_tokens == 6
    assert _status(admin)["b-openai"]["served"] >= 3
    time.sleep(1.5)  # the audit writer batches its rows
    rows = admin.ok("GET", "/api/audit", params={"model": "remote-llama"})["items"]
    assert rows and all(r["backend"] == "b-openai" for r in rows)


def test_load_spreads_across_two_healthy_peers(peers: tuple[ServerProcess, ...], admin: Api) -> None:
    front, b, c = peers
    ids = [_backend(admin, "spread-b", "openai", b.base_url), _backend(admin, "spread-c", "openai", c.base_url)]
    _rule(admin, "spread", ids, remote_model="tiny-gemma3")

    for peer in (b, c):  # both warm, so a first model load does not count against one of them
        openai.OpenAI(base_url=f"{peer.base_url}/v1", api_key="x").chat.completions.create(
            model="tiny-gemma3", messages=HI, max_tokens=1
        )

    # One at a time, equal backends alternate exactly (ties go to the one chosen longest ago).
    client = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=60)
    for _ in range(20):
        client.chat.completions.create(model="spread", messages=HI, max_tokens=2)
    status = _status(admin)
    assert [status["spread-b"]["served"], status["spread-c"]["served"]] == [10, 10]

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=60)
        sem = asyncio.Semaphore(4)

        async def one() -> None:
            async with sem:
                await client.chat.completions.create(model="spread", messages=HI, max_tokens=2)

        await asyncio.gather(*(one() for _ in range(80)))
        await client.close()

    # Concurrently, the faster peer rightly takes more (fewest outstanding), but neither is starved.
    asyncio.run(main())
    status = _status(admin)
    counts = sorted([status["spread-b"]["served"] - 10, status["spread-c"]["served"] - 10])
    assert sum(counts) == 80 and counts[0] >= 16, counts


def test_local_overflow_goes_to_the_rules_next_backend(peers: tuple[ServerProcess, ...], admin: Api) -> None:
    front, b, _ = peers
    local = _backend(admin, "here", "local", None)
    peer = _backend(admin, "overflow-b", "openai", b.base_url)
    _rule(admin, "tiny-mistral", [local, peer], priority=10)

    async def main() -> list[int]:
        client = openai.AsyncOpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0, timeout=60)
        outs = await asyncio.gather(
            *(client.chat.completions.create(model="tiny-mistral", messages=HI, max_tokens=30) for _ in range(6))
        )
        await client.close()
        return [o.usage.completion_tokens for o in outs if o.usage]

    assert asyncio.run(main()) == [30] * 6  # the front holds one at a time (max_waiting 0); the rest went to b
    assert _status(admin)["overflow-b"]["served"] >= 1


def test_a_stopped_peer_is_skipped_its_breaker_opens_and_recovers(
    tiny_models_dir: Path, tmp_path: Path, peers: tuple[ServerProcess, ...], admin: Api
) -> None:
    front, _, c = peers
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)]) as doomed:
        first = _backend(admin, "doomed", "openai", doomed.base_url)
        second = _backend(admin, "steady", "openai", c.base_url)
        _rule(admin, "ha", [first, second], remote_model="tiny-llama")
        client = openai.OpenAI(base_url=f"{front.base_url}/v1", api_key="x", max_retries=0)
        assert client.chat.completions.create(model="ha", messages=HI, max_tokens=2).usage
    # doomed is gone mid-run: every request still succeeds through steady
    for _ in range(8):
        out = client.chat.completions.create(model="ha", messages=HI, max_tokens=2)
        assert out.usage and out.usage.completion_tokens == 2
    status = _status(admin)
    assert status["doomed"]["breaker"] == "open" and status["steady"]["served"] >= 5
    metrics = httpx.get(f"{front.base_url}/metrics", headers=admin.http.headers, timeout=30).text
    assert 'mlx_manager_backend_breaker_state{backend="doomed"} 2.0' in metrics
    # It comes back (here: at another address, as after a redeploy): after the cooldown one probe closes the breaker.
    admin.ok("PATCH", f"/api/routing/backends/{first}", json={"base_url": peers[1].base_url})
    deadline = time.monotonic() + 30
    while _status(admin)["doomed"]["breaker"] != "closed" and time.monotonic() < deadline:
        client.chat.completions.create(model="ha", messages=HI, max_tokens=1)
        time.sleep(0.3)
    assert _status(admin)["doomed"]["breaker"] == "closed" and _status(admin)["doomed"]["failures"] == 0
