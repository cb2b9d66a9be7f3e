"""A client that goes away stops its generation."""

from __future__ import annotations

import contextlib
import time

import httpx

from mlx_manager.testing.server import ServerProcess

LONG = {"model": "tiny-qwen3", "messages": [{"role": "user", "content": "go"}], "max_tokens": 2000}


def _entry(server: ServerProcess, model: str) -> dict[str, int]:
    for m in httpx.get(f"{server.base_url}/admin/models").json()["data"]:
        if m["id"] == model:
            return dict(m)
    raise AssertionError(f"{model} not loaded")


def _wait_idle(server: ServerProcess, model: str, cancelled: int = 0, timeout: float = 30) -> dict[str, int]:
    """The model's counters once nothing runs and at least `cancelled` requests were cancelled (a request the
    client left may not have reached the model yet when the client gives up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = _entry(server, model)
        if entry["active_requests"] == 0 and entry["requests_cancelled"] >= cancelled:
            return entry
        time.sleep(0.05)
    raise AssertionError(f"generation still running, or never cancelled, after the client left: {entry}")


def test_closing_a_stream_cancels_generation(server: ServerProcess) -> None:
    httpx.post(f"{server.base_url}/admin/models/tiny-qwen3/load", timeout=30)
    before = _wait_idle(server, "tiny-qwen3")
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json={**LONG, "stream": True}) as resp:
        lines = resp.iter_lines()
        received = [next(lines) for _ in range(6)]
    assert any(line.startswith("data:") for line in received)
    after = _wait_idle(server, "tiny-qwen3", cancelled=before["requests_cancelled"] + 1)
    assert after["requests_cancelled"] == before["requests_cancelled"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] < 2000


def test_abandoned_non_streaming_request_is_cancelled(server: ServerProcess) -> None:
    httpx.post(f"{server.base_url}/admin/models/tiny-qwen3/load", timeout=30)
    before = _wait_idle(server, "tiny-qwen3")
    with contextlib.suppress(httpx.TimeoutException):
        httpx.post(f"{server.base_url}/v1/chat/completions", json=LONG, timeout=0.3)
    after = _wait_idle(server, "tiny-qwen3", cancelled=before["requests_cancelled"] + 1)
    assert after["requests_cancelled"] == before["requests_cancelled"] + 1
    assert after["tokens_generated"] - before["tokens_generated"] < 2000
