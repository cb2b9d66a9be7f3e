"""Batching and prefix caching as clients see them: cached_tokens, cache diagnostics, 429 with Retry-After."""

from __future__ import annotations

import asyncio

import httpx
import openai

from mlx_manager.testing.server import ServerProcess

SYSTEM = {"role": "system", "content": "You are a careful assistant. " * 20}


def test_second_turn_reuses_the_first_turns_kv(server: ServerProcess, client: openai.OpenAI) -> None:
    first_msgs = [SYSTEM, {"role": "user", "content": "Tell me about rivers and mountains."}]
    first = client.chat.completions.create(model="tiny-qwen3", messages=first_msgs, max_tokens=20, temperature=0)  # type: ignore[arg-type]
    assert first.usage is not None
    second_msgs = [
        *first_msgs,
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And lakes?"},
    ]
    second = client.chat.completions.create(model="tiny-qwen3", messages=second_msgs, max_tokens=5, temperature=0)  # type: ignore[arg-type]
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens or 0
    assert cached >= first.usage.prompt_tokens  # at least the whole first prompt came from the cache
    stats = httpx.get(f"{server.base_url}/admin/models/tiny-qwen3/cache").json()
    assert stats["hits"] >= 1 and stats["tokens_reused"] >= cached
    assert stats["recent"][-1]["reused_tokens"] == cached


def test_cache_diagnostics_show_where_a_volatile_head_diverged(server: ServerProcess, client: openai.OpenAI) -> None:
    def ask(stamp: str) -> None:
        client.completions.create(
            model="tiny-mistral", prompt=f"session {stamp}. " + "Shared agent instructions. " * 30, max_tokens=2
        )

    ask("aaaa")
    ask("bbbb")
    recent = httpx.get(f"{server.base_url}/admin/models/tiny-mistral/cache").json()["recent"][-1]
    assert recent["reused_tokens"] < 10
    assert recent["diverged_at"] is not None and 0 < recent["diverged_at"] < 10


def test_overload_gets_429_with_retry_after_while_others_complete(one_slot_server: ServerProcess) -> None:
    async def main() -> list[int]:
        async with httpx.AsyncClient(base_url=one_slot_server.base_url, timeout=60) as http:
            body = {"model": "tiny-llama", "prompt": "x", "max_tokens": 300, "temperature": 0}
            responses = await asyncio.gather(*(http.post("/v1/completions", json=body) for _ in range(6)))
        for r in responses:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1
                assert r.json()["error"]["code"] == "queue_full"
        return sorted(r.status_code for r in responses)

    statuses = asyncio.run(main())
    assert statuses.count(200) >= 1 and 429 in statuses and set(statuses) == {200, 429}
    # Nothing was lost: once the burst is over the model takes work again.
    body = {"model": "tiny-llama", "prompt": "y"}
    again = httpx.post(f"{one_slot_server.base_url}/v1/completions", json=body, timeout=60)
    assert again.status_code == 200


def test_a_volatile_billing_header_in_the_system_prompt_does_not_defeat_the_cache(client: openai.OpenAI) -> None:
    def ask(stamp: str) -> int:
        system = f"x-anthropic-billing-header: cc_version=1.0; cch={stamp};\n" + "You are an agent. " * 30
        out = client.chat.completions.create(
            model="tiny-gemma3",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": "List files."}],
            max_tokens=3,
        )
        assert out.usage is not None and out.usage.prompt_tokens_details is not None
        return out.usage.prompt_tokens_details.cached_tokens or 0

    ask("a1b2c3")
    assert ask("d4e5f6") > 30
