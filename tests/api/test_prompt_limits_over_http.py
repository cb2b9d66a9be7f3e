"""Cheap checks before templating and tokenizing (issue #12, finding 5): a prompt with more bytes than
`max_prompt_bytes` or more messages than `max_messages` is a 400 naming the setting in each API's shape, and a
prompt with more characters than the model's context can hold is a 400 without being tokenized (chat completions,
text completions and Anthropic count_tokens)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

MODEL = "tiny-llama"  # 2048 tokens of context; its longest token is 28 characters


@pytest.fixture(scope="module")
def tight(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"MLX_MANAGER_MAX_PROMPT_BYTES": "8192", "MLX_MANAGER_MAX_MESSAGES": "4"}
    with run_server(tmp_path_factory.mktemp("tight"), ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        yield srv


def chat(text: str, messages: int = 1) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": text}] * messages}


CASES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", chat("x")),
    ("/v1/messages", chat("x")),
    ("/v1/messages/count_tokens", {k: v for k, v in chat("x").items() if k != "max_tokens"}),
    ("/v1/responses", {"model": MODEL, "max_output_tokens": 16, "input": [{"role": "user", "content": "x"}]}),
]


def message_of(path: str, resp: httpx.Response) -> str:
    body = resp.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    else:
        assert body["error"]["type"] == "invalid_request_error", body
    return str(body["error"]["message"])


def with_text(path: str, body: dict[str, Any], text: str, count: int = 1) -> dict[str, Any]:
    if path == "/v1/responses":
        return {**body, "input": [{"role": "user", "content": text}] * count}
    return {**body, "messages": [{"role": "user", "content": text}] * count}


@pytest.mark.parametrize(("path", "body"), CASES, ids=[c[0] for c in CASES])
def test_too_many_bytes_or_messages_is_a_400_naming_the_setting(
    tight: ServerProcess, path: str, body: dict[str, Any]
) -> None:
    big = httpx.post(f"{tight.base_url}{path}", json=with_text(path, body, "é" * 5000), timeout=30)
    assert big.status_code == 400, big.text
    assert "at most 8192 (max_prompt_bytes)" in message_of(path, big)
    many = httpx.post(f"{tight.base_url}{path}", json=with_text(path, body, "hi", count=5), timeout=30)
    assert many.status_code == 400, many.text
    assert "5 messages" in message_of(path, many) and "(max_messages)" in message_of(path, many)
    fits = httpx.post(f"{tight.base_url}{path}", json=with_text(path, body, "hi", count=3), timeout=60)
    assert fits.status_code == 200, fits.text


def test_a_text_completion_over_max_prompt_bytes_is_a_400(tight: ServerProcess) -> None:
    resp = httpx.post(f"{tight.base_url}/v1/completions", json={"model": MODEL, "prompt": "a" * 9000}, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "prompt", resp.text
    assert "(max_prompt_bytes)" in resp.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages/count_tokens", "/v1/completions"])
def test_a_prompt_longer_than_the_context_can_hold_is_refused_before_tokenizing(
    server: ServerProcess, path: str
) -> None:
    text = "lorem ipsum dolor sit amet " * 300_000  # 8 MB: under max_prompt_bytes, far over 2048 tokens
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": text}]}
    if path == "/v1/completions":
        body = {"model": MODEL, "prompt": text, "max_tokens": 1}
    started = time.monotonic()
    resp = httpx.post(f"{server.base_url}{path}", json=body, timeout=120)
    elapsed = time.monotonic() - started
    assert resp.status_code == 400, resp.text[:500]
    message = resp.json()["error"]["message"]
    assert "maximum context length is 2048 tokens" in message and "characters long" in message, message
    if path != "/v1/messages/count_tokens":
        assert resp.json()["error"]["code"] == "context_length_exceeded"
    assert elapsed < 60  # a sanity bound only: refused without tokenizing, it takes well under a second
