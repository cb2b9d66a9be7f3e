"""Time limits per endpoint through a real server: a generation past its limit ends with a final chunk saying
"length" in each API's terms, a request queued past the queue limit is a 503 with Retry-After in each API's error
shape, and both limits are live settings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from tests.api.accounts import register, signed_in

LONG = 1900  # the tiny models never say EOS, so this many tokens take seconds


@pytest.fixture(scope="module")
def limited(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MLX_MANAGER_MAX_NUM_SEQS": "1",
        "MLX_MANAGER_CHAT_TIMEOUT_SECONDS": "0.4",
        "MLX_MANAGER_QUEUE_TIMEOUT_SECONDS": "1",
    }
    with run_server(tmp_path_factory.mktemp("limits"), ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        yield srv


def _openai(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=120)


def _limits_counted(server: ServerProcess, kind: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    found = re.findall(rf'mlx_manager_time_limits_total{{endpoint="chat",kind="{kind}"}} ([0-9.]+)', text)
    return float(found[0]) if found else 0.0


def test_a_generation_past_its_time_limit_ends_with_length_in_each_api(limited: ServerProcess) -> None:
    client = _openai(limited)
    msgs = [{"role": "user", "content": "Count forever."}]
    whole = client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=LONG)  # type: ignore[arg-type]
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and 0 < whole.usage.completion_tokens < LONG

    chunks = list(client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=LONG, stream=True))  # type: ignore[arg-type]
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length"]

    claude = anthropic.Anthropic(base_url=limited.base_url, api_key="x", max_retries=0)
    message = claude.messages.create(model="tiny-llama", max_tokens=LONG, messages=[{"role": "user", "content": "Go"}])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens < LONG
    assert _limits_counted(limited, "generation") >= 3
    assert "ran past its time limit" in limited.log()


def test_a_request_queued_past_its_limit_is_a_503_with_retry_after(limited: ServerProcess) -> None:
    """One slot (max_num_seqs 1): a long text completion (600 s limit) holds it while chat requests queue."""

    async def main() -> None:
        async with httpx.AsyncClient(base_url=limited.base_url, timeout=120) as http:
            body = {"model": "tiny-llama", "prompt": "x", "max_tokens": LONG, "ignore_eos": True}
            holder = asyncio.create_task(http.post("/v1/completions", json=body))
            for _ in range(600):  # until the completion is running (not a guess at how long that takes)
                metrics = (await http.get("/metrics")).text
                if re.search(r'mlx_manager_running_sequences{model="tiny-llama"} 1', metrics):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the long completion never started")
            chat = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
            refused = await http.post("/v1/chat/completions", json=chat)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["code"] == "queue_timeout"
            stream = await http.post("/v1/chat/completions", json={**chat, "stream": True})
            assert stream.status_code == 503 and stream.json()["error"]["type"] == "server_error"
            messages = {"model": "tiny-llama", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            claude = await http.post("/v1/messages", json=messages)
            assert claude.status_code == 503 and claude.json()["error"]["type"] == "overloaded_error"
            assert "retry-after" in claude.headers
            holder.cancel()

    asyncio.run(main())
    assert _limits_counted(limited, "queue") >= 3


def test_time_limits_are_live_settings(limited: ServerProcess) -> None:
    register(limited, "admin")
    admin = signed_in(limited, "admin")
    assert admin.ok("GET", "/api/settings")["chat_timeout_seconds"] == 0.4
    admin.ok("PATCH", "/api/settings", json={"chat_timeout_seconds": 0})  # no limit
    client = _openai(limited)
    msgs = [{"role": "user", "content": "Count."}]
    full = client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=300)  # type: ignore[arg-type]
    assert full.usage is not None and full.usage.completion_tokens == 300
    admin.ok("PATCH", "/api/settings", json={"chat_timeout_seconds": None})  # the configured 0.4 s again
    cut = client.chat.completions.create(model="tiny-llama", messages=msgs, max_tokens=LONG)  # type: ignore[arg-type]
    assert cut.choices[0].finish_reason == "length" and cut.usage is not None and cut.usage.completion_tokens < LONG
