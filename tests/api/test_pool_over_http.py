"""The model pool seen through the API: one load for concurrent requests, LRU eviction, admin routes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def small_pool(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--model-dir", str(tiny_models_dir), "--max-models", "2"]
    with run_server(tmp_path_factory.mktemp("pool"), args) as srv:
        yield srv


def _admin(server: ServerProcess) -> dict[str, object]:
    return dict(httpx.get(f"{server.base_url}/admin/models").json())


def _loaded(server: ServerProcess) -> list[str]:
    return [m["id"] for m in _admin(server)["data"]]  # type: ignore[attr-defined]


def test_concurrent_requests_for_one_model_load_it_once(small_pool: ServerProcess) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{small_pool.base_url}/v1", api_key="x", max_retries=0)
        outs = await asyncio.gather(
            *(client.chat.completions.create(model="tiny-gemma3", messages=MSG, max_tokens=4) for _ in range(8))
        )
        await client.close()
        return [o.choices[0].finish_reason or "" for o in outs]

    assert asyncio.run(main()) == ["length"] * 8
    state = _admin(small_pool)
    assert state["loads"] == 1
    assert _loaded(small_pool) == ["tiny-gemma3"]
    assert small_pool.log().count("Loaded tiny-gemma3") == 1


def test_least_recently_used_model_is_evicted_before_loading(small_pool: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{small_pool.base_url}/v1", api_key="x", max_retries=0)
    for model in ("tiny-llama", "tiny-qwen3", "tiny-llama", "tiny-mistral"):
        client.chat.completions.create(model=model, messages=MSG, max_tokens=2)  # type: ignore[arg-type]
    # tiny-qwen3 was used least recently when tiny-mistral needed room.
    assert sorted(_loaded(small_pool)) == ["tiny-llama", "tiny-mistral"]
    assert "Unloading tiny-qwen3 (to make room for tiny-mistral)" in small_pool.log()


def test_admin_load_pin_and_unload(small_pool: ServerProcess) -> None:
    base = small_pool.base_url
    pinned = httpx.post(f"{base}/admin/models/tiny-gemma3/load", params={"pin": "true"}, timeout=30).json()
    assert pinned["pinned"] is True and pinned["memory_bytes"] > 0
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
    for model in ("tiny-llama", "tiny-qwen3", "tiny-mistral"):
        client.chat.completions.create(model=model, messages=MSG, max_tokens=2)  # type: ignore[arg-type]
        assert "tiny-gemma3" in _loaded(small_pool)
    assert httpx.post(f"{base}/admin/models/tiny-gemma3/unload").json()["status"] == "unloaded"
    assert "tiny-gemma3" not in _loaded(small_pool)
    missing = httpx.post(f"{base}/admin/models/tiny-gemma3/unload")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_loaded"


def test_local_models_lists_size_family_and_context(small_pool: ServerProcess) -> None:
    models = {m["id"]: m for m in httpx.get(f"{small_pool.base_url}/admin/models/local").json()}
    assert models["tiny-llama"]["family"] == "llama3"
    assert models["tiny-qwen3"]["family"] == "qwen3"
    assert models["tiny-gemma3"]["family"] == "gemma"
    assert models["tiny-mistral"]["family"] == "mistral"
    assert models["tiny-llama-4bit"]["quantization_bits"] == 4
    assert models["tiny-llama"]["context_length"] == 2048
    assert models["tiny-llama-4bit"]["size_bytes"] < models["tiny-llama"]["size_bytes"]


def test_concurrent_requests_for_more_models_than_fit_all_succeed(small_pool: ServerProcess) -> None:
    async def main() -> list[str]:
        client = openai.AsyncOpenAI(base_url=f"{small_pool.base_url}/v1", api_key="x", max_retries=0, timeout=120)
        models = ["tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3"] * 2
        outs = await asyncio.gather(
            *(client.chat.completions.create(model=m, messages=MSG, max_tokens=30) for m in models)  # type: ignore[arg-type]
        )
        await client.close()
        return [o.choices[0].finish_reason or "" for o in outs]

    # max_models=2: later models wait for earlier ones to go idle instead of evicting them mid-request.
    assert asyncio.run(main()) == ["length"] * 8
    assert len(_loaded(small_pool)) <= 2


def test_a_model_that_does_not_fit_in_free_memory_is_a_507_and_the_server_lives(
    tiny_models_dir: Path, tmp_path: Path
) -> None:
    env = {"MLX_MANAGER_MEMORY_RESERVE_BYTES": str(10**15)}  # more than any machine has free
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        resp = httpx.post(f"{srv.base_url}/v1/chat/completions", json=body, timeout=60)
        assert resp.status_code == 507 and resp.json()["error"]["code"] == "insufficient_memory"
        assert "GB is free" in resp.json()["error"]["message"]
        assert httpx.get(f"{srv.base_url}/health").json()["status"] == "ok"
