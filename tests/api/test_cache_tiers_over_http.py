"""Prefix cache tiers as clients see them, through real servers: a cancelled request's prefill is reused,
concurrent requests prefill a shared prefix once, the disk tier survives a restart (and a torn file or changed
weights never feed a wrong answer)."""

from __future__ import annotations

import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import mlx.core as mx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from mlx_manager.testing.server import ServerProcess, run_server

SYSTEM = "You are a careful assistant who answers questions about rivers, lakes and mountains. " * 40
QUESTION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me about rivers."}]


def client_of(srv: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.base_url}/v1", api_key="unused", max_retries=0, timeout=60)


def ask(srv: ServerProcess, messages: list[dict[str, str]], model: str = "tiny-llama") -> tuple[str, int, int]:
    """Greedy reply text, cached tokens and prompt tokens."""
    out = client_of(srv).chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=16,
        temperature=0,
    )
    assert out.usage is not None and out.usage.prompt_tokens_details is not None
    return (
        out.choices[0].message.content or "",
        out.usage.prompt_tokens_details.cached_tokens or 0,
        out.usage.prompt_tokens,
    )


def cache_stats(srv: ServerProcess, model: str = "tiny-llama") -> dict[str, Any]:
    r = httpx.get(f"{srv.base_url}/admin/models/{model}/cache", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def tiers_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with run_server(tmp_path_factory.mktemp("tiers"), ["--model-dir", str(tiny_models_dir)]) as srv:
        yield srv


def test_a_request_cancelled_at_its_first_token_is_reused_by_the_retry(tiers_server: ServerProcess) -> None:
    messages = [{"role": "system", "content": "Cancel me. " + SYSTEM}, QUESTION[1]]
    stream = cast(
        "openai.Stream[ChatCompletionChunk]",
        client_of(tiers_server).chat.completions.create(
            model="tiny-llama",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=400,
            temperature=0,
            stream=True,
        ),
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()  # the client goes away at its first token
    _, cached, prompt_tokens = ask(tiers_server, messages)
    assert cached == prompt_tokens - 1


def test_two_concurrent_requests_with_a_new_shared_prefix_prefill_it_once(tiers_server: ServerProcess) -> None:
    system = f"Session {uuid.uuid4().hex}. " + SYSTEM
    before = cache_stats(tiers_server)["prompt_tokens_computed"] if _loaded(tiers_server) else 0
    questions = [[{"role": "system", "content": system}, {"role": "user", "content": q}] for q in ("Rivers?", "Lakes?")]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda m: ask(tiers_server, m), questions))
    cached = sorted(c for _, c, _ in results)
    shared = min(p for _, _, p in results) - 16  # the user turns differ in their last few tokens
    # The first reuses at most the chat template's head (cached from earlier tests); the second the first's prefill.
    assert cached[0] < 64 and cached[1] >= shared - 32
    computed = cache_stats(tiers_server)["prompt_tokens_computed"] - before
    assert computed == sum(p for _, _, p in results) - sum(cached)  # the shared part was computed once


def _loaded(srv: ServerProcess) -> bool:
    return httpx.get(f"{srv.base_url}/admin/models/tiny-llama/cache", timeout=10).status_code == 200


def test_the_disk_tier_survives_a_restart_with_the_same_greedy_output(tiny_models_dir: Path, tmp_path: Path) -> None:
    args = ["--model-dir", str(tiny_models_dir)]
    with run_server(tmp_path, args) as first:
        cold, cached, _ = ask(first, QUESTION)
        assert cached == 0
    files = list((tmp_path / "kv-cache").glob("*/*.safetensors"))
    assert files, "the unload at shutdown writes what RAM held"
    with run_server(tmp_path, args) as second:
        warm, cached, prompt_tokens = ask(second, QUESTION)
        stats = cache_stats(second)
        metrics = httpx.get(f"{second.base_url}/metrics", timeout=10).text
    assert warm == cold
    assert cached == prompt_tokens - 1
    assert stats["recent"][-1]["tier"] == "disk" and stats["hits_by_tier"]["disk"] == 1
    assert stats["disk"]["reads"] == 1 and stats["disk"]["read_seconds"] > 0
    assert 'mlx_manager_prefix_cache_hits_total{model="tiny-llama",tier="disk"} 1.0' in metrics
    assert 'mlx_manager_prefix_cache_disk_reads_total{model="tiny-llama"} 1.0' in metrics
    assert 'mlx_manager_prefix_cache_bytes{model="tiny-llama",tier="disk"}' in metrics


def test_a_torn_cache_file_is_ignored_after_a_restart(tiny_models_dir: Path, tmp_path: Path) -> None:
    args = ["--model-dir", str(tiny_models_dir)]
    with run_server(tmp_path, args) as first:
        cold, _, _ = ask(first, QUESTION)
    for path in (tmp_path / "kv-cache").glob("*/*.safetensors"):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # as a crash mid-write would leave it
    with run_server(tmp_path, args) as second:
        again, cached, _ = ask(second, QUESTION)
        stats = cache_stats(second)
    assert cached == 0 and again == cold
    assert stats["disk"]["unreadable"] >= 1 and stats["hits_by_tier"]["disk"] == 0


def test_changed_weights_never_reuse_blocks_of_the_old_model(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(tiny_models["tiny-llama"], models / "tiny-llama")
    args = ["--model-dir", str(models)]
    with run_server(tmp_path / "home", args) as first:
        ask(first, QUESTION)
    weights = models / "tiny-llama" / "model.safetensors"
    tensors, metadata = cast("tuple[dict[str, mx.array], dict[str, str]]", mx.load(str(weights), return_metadata=True))
    name = next(k for k in tensors if k.endswith("layers.0.self_attn.v_proj.weight"))
    tensors[name] = tensors[name] * -1.0  # same shapes and size, other values
    mx.save_safetensors(str(weights), tensors, metadata)
    with run_server(tmp_path / "home", args) as second:
        changed, cached, _ = ask(second, QUESTION)
        assert cache_stats(second)["disk"]["entries"] == 0
    with run_server(tmp_path / "fresh-home", args) as cold:
        expected, _, _ = ask(cold, QUESTION)
    assert cached == 0 and changed == expected


def test_cache_false_keeps_a_request_out_of_the_cache_in_every_api(tiers_server: ServerProcess) -> None:
    import anthropic

    def fresh() -> list[dict[str, str]]:
        return [{"role": "system", "content": f"{uuid.uuid4()} {SYSTEM}"}, QUESTION[1]]

    oai = client_of(tiers_server)
    claude = anthropic.Anthropic(base_url=tiers_server.base_url, api_key="unused", max_retries=0, timeout=60)
    sends = {
        "chat": lambda m, c: oai.chat.completions.create(
            model="tiny-llama", messages=m, max_tokens=2, extra_body={"cache": c}
        ),
        "messages": lambda m, c: claude.messages.create(
            model="tiny-llama", system=m[0]["content"], messages=m[1:], max_tokens=2, extra_body={"cache": c}
        ),
        "responses": lambda m, c: oai.responses.create(
            model="tiny-llama", instructions=m[0]["content"], input=m[1]["content"], max_output_tokens=2,
            extra_body={"cache": c},
        ),
    }  # fmt: skip
    for api, send in sends.items():
        ask(tiers_server, fresh())
        shared_head = ask(tiers_server, fresh())[1]  # the template's head before the system text, now cached
        uncached = fresh()
        send(uncached, False)
        # Nothing of the cache=false request was kept: only the shared head (give or take the token a random id
        # may share with an earlier one) is reused, not its system text of several hundred tokens.
        assert ask(tiers_server, uncached)[1] <= shared_head + 8, api
        kept = fresh()
        send(kept, True)
        assert ask(tiers_server, kept)[1] > shared_head + 100, api


def test_the_next_turn_reuses_the_reply_sent_back_as_the_assistant_message(tiers_server: ServerProcess) -> None:
    # An agent client sends the model's own reply back, re-templated: the KV kept at the end of a request holds
    # the generated tokens too, so turn 2 reuses through the reply, not only turn 1's prompt.
    messages = [{"role": "system", "content": f"{uuid.uuid4()} {SYSTEM}"}, QUESTION[1]]
    first = client_of(tiers_server).chat.completions.create(
        model="tiny-qwen3",
        messages=messages,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
    )
    assert first.usage is not None and first.usage.completion_tokens == 40
    reply = first.choices[0].message.content or ""
    messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And lakes?"}]
    _, cached, prompt_tokens = ask(tiers_server, messages, model="tiny-qwen3")
    assert cached == first.usage.prompt_tokens + first.usage.completion_tokens
    assert prompt_tokens > cached
