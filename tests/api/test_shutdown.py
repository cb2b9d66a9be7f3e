"""SIGTERM drains: new requests get 503 with Retry-After, in-flight streams end with a final chunk, nothing hangs."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from mlx_manager.sse import END, iter_events, json_data
from mlx_manager.testing.server import run_server

LONG: dict[str, Any] = {
    "model": "tiny-llama",
    "messages": [{"role": "user", "content": "Go on forever."}],
    "max_tokens": 1900,
    "ignore_eos": True,
    "stream": True,
}


def _stream(base_url: str, out: dict[str, Any]) -> None:
    chunks: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=LONG, timeout=60) as resp:
        for sse in iter_events(resp):
            if (data := json_data(sse)) is END:
                out["done"] = True
            elif data is not None:
                chunks.append(data)
                out.setdefault("first_at", time.monotonic())
    out["chunks"] = chunks


def test_sigterm_refuses_new_work_then_ends_streams_with_a_finish_reason(tiny_models_dir: Path, tmp_path: Path) -> None:
    env = {"MLX_MANAGER_DRAIN_SECONDS": "2.5"}  # room for the requests below; the stream needs about 4 s
    with run_server(tmp_path, ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        result: dict[str, Any] = {}
        worker = threading.Thread(target=_stream, args=(srv.base_url, result))
        worker.start()
        deadline = time.monotonic() + 60
        while "first_at" not in result and time.monotonic() < deadline:
            time.sleep(0.05)
        srv.proc.send_signal(signal.SIGTERM)
        while httpx.get(f"{srv.base_url}/health", timeout=10).status_code != 503:  # the drain has begun
            assert time.monotonic() < deadline, "SIGTERM never started the drain"
            time.sleep(0.02)
        refused = httpx.post(f"{srv.base_url}/v1/chat/completions", json={**LONG, "stream": False}, timeout=10)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        assert refused.json()["error"]["code"] == "shutting_down"
        anthropic = httpx.post(
            f"{srv.base_url}/v1/messages", json={"model": "tiny-llama", "max_tokens": 2, "messages": []}
        )
        assert anthropic.status_code == 503 and anthropic.json()["error"]["type"] == "overloaded_error"
        worker.join(30)
        assert not worker.is_alive()
        assert srv.proc.wait(30) is not None
    chunks = result["chunks"]
    assert result.get("done") and chunks[-1]["choices"][0]["finish_reason"] == "length"
    produced = sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content"))
    assert 0 < produced < 1900  # cut short by the drain timeout, not run to the end
    assert "ended 1 generation(s) early" in srv.log()
