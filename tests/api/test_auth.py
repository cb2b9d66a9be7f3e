"""The optional API key guards /v1 and /admin; /health stays open."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server

KEY = "sk-test-secret"


@pytest.fixture(scope="module")
def keyed(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with run_server(tmp_path_factory.mktemp("auth"), ["--model-dir", str(tiny_models_dir), "--api-key", KEY]) as s:
        yield s


def test_missing_or_wrong_key_is_401_in_openai_shape(keyed: ServerProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        resp = httpx.get(f"{keyed.base_url}/v1/models", headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    assert httpx.get(f"{keyed.base_url}/admin/models").status_code == 401


def test_right_key_works_with_the_sdk(keyed: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{keyed.base_url}/v1", api_key=KEY, max_retries=0)
    out = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "x"}], max_tokens=2)
    assert out.usage is not None and out.usage.completion_tokens == 2
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.base_url}/v1", api_key="nope", max_retries=0).models.list()


def test_health_needs_no_key(keyed: ServerProcess) -> None:
    assert httpx.get(f"{keyed.base_url}/health").json()["status"] == "ok"


def test_anthropic_routes_take_x_api_key_or_bearer_and_answer_401_in_anthropic_shape(keyed: ServerProcess) -> None:
    import anthropic

    body = {"model": "tiny-llama", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}
    for path in ("/v1/messages", "/anthropic/v1/messages"):
        resp = httpx.post(f"{keyed.base_url}{path}", json=body, headers={"x-api-key": "wrong"})
        assert resp.status_code == 401
        assert resp.json() == {
            "type": "error",
            "error": {"type": "authentication_error", "message": resp.json()["error"]["message"]},
            "request_id": resp.headers["x-request-id"],
        }
        ok = httpx.post(f"{keyed.base_url}{path}", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        assert ok.status_code == 200, ok.text
    out = anthropic.Anthropic(base_url=keyed.base_url, api_key=KEY, max_retries=0).messages.create(**body)  # type: ignore[arg-type]
    assert out.usage.output_tokens == 2
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=keyed.base_url, api_key="nope", max_retries=0).messages.create(**body)  # type: ignore[arg-type]


def test_metrics_need_the_key_when_one_is_set(keyed: ServerProcess) -> None:
    assert httpx.get(f"{keyed.base_url}/metrics").status_code == 401
    resp = httpx.get(f"{keyed.base_url}/metrics", headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 200 and "mlx_manager_models_loaded" in resp.text
