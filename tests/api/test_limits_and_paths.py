"""Limits answer with clear errors, models are only read from allowed folders, CORS is opt-in."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def strict(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MLX_MANAGER_MAX_REQUEST_BYTES": "4096",
        "MLX_MANAGER_MAX_TOOLS": "2",
        "MLX_MANAGER_CORS_ORIGINS": "http://ui.local",
    }
    with run_server(tmp_path_factory.mktemp("strict"), ["--model-dir", str(tiny_models_dir)], env=env) as srv:
        yield srv


def test_a_body_over_the_limit_is_a_413_in_each_apis_shape(strict: ServerProcess) -> None:
    big = {"model": "tiny-llama", "messages": [{"role": "user", "content": "x" * 8000}], "max_tokens": 2}
    resp = httpx.post(f"{strict.base_url}/v1/chat/completions", json=big)
    assert resp.status_code == 413 and "4096" in resp.json()["error"]["message"]
    resp = httpx.post(f"{strict.base_url}/v1/messages", json=big)
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    resp = httpx.post(
        f"{strict.base_url}/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert resp.status_code == 413
    ok = httpx.post(
        f"{strict.base_url}/v1/chat/completions",
        json={"model": "tiny-llama", "messages": HI, "max_tokens": 1},
        timeout=60,
    )
    assert ok.status_code == 200


def test_too_many_tools_is_a_400_naming_the_limit(strict: ServerProcess) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    tools = [{**tool, "function": {**tool["function"], "name": f"f{i}"}} for i in range(3)]
    resp = httpx.post(
        f"{strict.base_url}/v1/chat/completions",
        json={"model": "tiny-llama", "messages": HI, "tools": tools},
        timeout=60,
    )
    assert resp.status_code == 400 and "max_tools" in resp.json()["error"]["message"]


def test_prompt_plus_max_tokens_over_the_context_is_a_400_with_the_numbers(strict: ServerProcess) -> None:
    resp = httpx.post(
        f"{strict.base_url}/v1/chat/completions",
        json={"model": "tiny-llama", "messages": HI, "max_tokens": 5000},
        timeout=60,
    )
    body = resp.json()["error"]
    assert resp.status_code == 400 and body["code"] == "context_length_exceeded" and "2048" in body["message"]


def test_cors_answers_only_configured_origins(strict: ServerProcess, server: ServerProcess) -> None:
    pre = {"Origin": "http://ui.local", "Access-Control-Request-Method": "POST"}
    ok = httpx.options(f"{strict.base_url}/v1/chat/completions", headers=pre)
    assert ok.headers.get("access-control-allow-origin") == "http://ui.local"
    other = httpx.options(f"{strict.base_url}/v1/chat/completions", headers={**pre, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    default = httpx.get(f"{server.base_url}/v1/models", headers={"Origin": "http://ui.local"})
    assert "access-control-allow-origin" not in default.headers  # off unless configured
    assert default.headers["x-content-type-options"] == "nosniff" and default.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "model",
    ["../tiny-models/tiny-llama", "/etc", "/etc/passwd", "tiny-llama/../../../etc", "..", "~/.ssh", "%2e%2e%2fetc"],
)
def test_a_model_name_that_is_a_path_is_never_opened(server: ServerProcess, model: str) -> None:
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json={"model": model, "messages": HI}, timeout=30)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    for path in (f"/v1/models/{quote(model, safe='')}", f"/admin/models/{quote(model, safe='')}/cache"):
        assert httpx.get(f"{server.base_url}{path}").status_code == 404
    assert httpx.post(f"{server.base_url}/admin/models/{quote(model, safe='')}/load").status_code == 404


def test_a_model_folder_outside_the_configured_ones_is_refused(
    server: ServerProcess, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(tiny_models["tiny-llama"], outside)
    resp = httpx.post(
        f"{server.base_url}/v1/chat/completions", json={"model": str(outside), "messages": HI}, timeout=30
    )
    assert resp.status_code == 404
    assert "elsewhere" not in [m["id"] for m in httpx.get(f"{server.base_url}/v1/models").json()["data"]]
