"""A base URL pasted the wrong way (OpenAI SDKs without /v1, the Anthropic SDK with it) gets a 404 in the SDK's own
error shape that says which base URL to set, never the web UI's HTML or a bare "Not Found"."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

HI = [{"role": "user", "content": "hi"}]


def test_an_openai_sdk_without_v1_is_told_to_add_it(server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError) as listing:
        client.models.list()  # GET /models is also the UI's Models page: HTML would break the SDK
    assert f"base URL to {server.base_url}/v1" in str(listing.value)
    with pytest.raises(openai.NotFoundError) as chat:
        client.chat.completions.create(model="tiny-llama", messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert "/v1/chat/completions" in str(chat.value) and f"{server.base_url}/v1" in str(chat.value)
    # With /v1 it works, and a browser still gets the Models page.
    assert openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x").models.list().data
    page = httpx.get(f"{server.base_url}/models", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


def test_the_anthropic_sdk_with_v1_is_told_to_drop_it_in_its_own_shape(server: ServerProcess) -> None:
    claude = anthropic.Anthropic(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as err:
        claude.messages.create(model="tiny-llama", max_tokens=1, messages=HI)  # type: ignore[arg-type]
    assert err.value.body["type"] == "error" and err.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert "/v1 twice" in str(err.value) and f"base URL to {server.base_url}." in str(err.value)
    reply = httpx.post(f"{server.base_url}/messages", json={"model": "tiny-llama"})
    assert reply.status_code == 404 and reply.json()["type"] == "error", reply.text
    assert "/v1/messages" in reply.json()["error"]["message"]


def test_other_unknown_paths_keep_a_plain_404(server: ServerProcess) -> None:
    reply = httpx.post(f"{server.base_url}/v1/nothing-here", json={})
    assert reply.status_code == 404 and reply.json()["error"]["message"] == "Not Found", reply.text
