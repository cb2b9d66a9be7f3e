"""Property-based, against a real server: every model-serving route, sent a valid body with one or two fields at any
depth replaced or added (lone surrogates, integers past 64 bits, wrong types, NaN), answers below 500,
with any error in its API's own shape, and keeps serving afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlx_manager.testing.server import ServerProcess, run_server

JsonPath = tuple[str | int, ...]

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
CHAT = {
    "model": "tiny-llama",
    "max_tokens": 2,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ],
    "tools": [TOOL],
    "tool_choice": "auto",
    "stop": ["\n\n"],
    "seed": 1,
    "n": 1,
    "priority": 0,
    "top_k": 5,
    "temperature": 0.5,
    "logit_bias": {"5": 1.0},
    "logprobs": True,
    "top_logprobs": 2,
    "stream": False,
    "user": "u",
    "metadata": {"k": "v"},
}
COMPLETION = {"model": "tiny-llama", "prompt": ["Hi", "there"], "max_tokens": 2, "seed": 2, "n": 1, "logprobs": 1}
MESSAGES = {
    "model": "tiny-llama",
    "max_tokens": 2,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, "b"]}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}]},
    ],
    "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "stop_sequences": ["\n\n"],
    "top_k": 5,
    "metadata": {"user_id": "u"},
    "stream": False,
}
COUNT_TOKENS = {key: MESSAGES[key] for key in ("model", "system", "messages", "tools")}
RESPONSES = {
    "model": "tiny-llama",
    "max_output_tokens": 2,
    "instructions": "Be brief.",
    "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a": 1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    "text": {"format": {"type": "text"}},
    "metadata": {"k": "v"},
    "store": False,
    "stream": False,
}
EMBEDDINGS = {"model": "all-MiniLM-L6-v2", "input": ["Hi", "there"], "encoding_format": "float", "dimensions": 8}
RERANK = {"model": "tiny-cross-encoder", "query": "q", "documents": ["a", {"text": "b"}], "top_n": 1}

ROUTES = {
    "/v1/chat/completions": CHAT,
    "/v1/completions": COMPLETION,
    "/v1/messages": MESSAGES,
    "/v1/messages/count_tokens": COUNT_TOKENS,
    "/v1/responses": RESPONSES,
    "/v1/embeddings": EMBEDDINGS,
    "/v1/rerank": RERANK,
}

SURROGATES = st.sampled_from(["\ud800", "a\udfffb", "\udbff\udbff", "ok\ud83d"])
# Integers at and past the edges of 64 bits; no ordinary sizes, which as max_tokens would make real generation long.
INTEGERS = st.sampled_from([0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(2**63), -(2**63) - 1])
SCALARS = st.one_of(
    SURROGATES,
    INTEGERS,
    st.floats(),  # NaN and the infinities too: Python's json writes and reads them
    st.booleans(),
    st.none(),
    st.text(max_size=6),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | SURROGATES, inner, max_size=3),
    max_leaves=5,
)


# Members a client might add to any object: several models pass unknown members on to the chat template.
ADDED = ["reasoning_content", "name", "tool_call_id", "type", "text", "content", "image_url", "source", "input"]


def paths(value: Any, prefix: JsonPath = ()) -> list[JsonPath]:
    """Every place in a JSON value that can be replaced, each object member and list item at any depth, and
    members that could be added to each object."""
    children: list[tuple[str | int, Any]] = []
    added: list[JsonPath] = []
    if isinstance(value, dict):
        children = list(value.items())
        added = [(*prefix, key) for key in ADDED if key not in value]
    elif isinstance(value, list):
        children = list(enumerate(value))
    return [p for key, child in children for p in [(*prefix, key), *paths(child, (*prefix, key))]] + added


def replaced(body: Any, path: JsonPath, value: Any) -> Any:
    if not path:
        return value
    copy = dict(body) if isinstance(body, dict) else list(body)
    copy[path[0]] = replaced(copy[path[0]], path[1:], value)  # type: ignore[index]
    return copy


def raw_json(body: Any) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes, as a client's JSON would carry them.
    return json.dumps(body, ensure_ascii=True, allow_nan=True).encode()


def assert_error_shape(path: str, response: httpx.Response) -> None:
    body = response.json()
    if path.startswith("/v1/messages") or path.startswith("/anthropic/"):
        assert body["type"] == "error", body
        assert isinstance(body["error"]["type"], str) and isinstance(body["error"]["message"], str), body
    else:
        error = body["error"]
        assert isinstance(error["message"], str) and isinstance(error["type"], str), body
        assert "param" in error and "code" in error, body


def assert_answered(path: str, response: httpx.Response) -> None:
    sent = response.request.content[:500]
    assert response.status_code < 500, (response.status_code, response.text[:500], sent)
    if response.status_code >= 400:
        assert_error_shape(path, response)
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        assert "server_error" not in response.text and "api_error" not in response.text, response.text[-500:]


@pytest.fixture(scope="module")
def server(
    tiny_models_dir: Path, minilm_dir: Path, tiny_rerankers_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Chat, embedding and rerank models; a request that leaves max_tokens out gets 4, so generation stays cheap."""
    args = [a for d in (tiny_models_dir, minilm_dir.parent, tiny_rerankers_dir) for a in ("--model-dir", str(d))]
    env = {"MLX_MANAGER_DEFAULT_MAX_TOKENS": "4"}
    with run_server(tmp_path_factory.mktemp("model-api-fuzz"), args, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60, headers={"content-type": "application/json"}) as client:
        yield client


FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("path", list(ROUTES))
def test_a_field_replaced_by_anything_is_never_a_server_error(http: httpx.Client, path: str) -> None:
    base = ROUTES[path]
    assert http.post(path, content=raw_json(base)).status_code == 200

    @FUZZ
    @given(st.lists(st.tuples(st.sampled_from(paths(base)), VALUES), min_size=1, max_size=2))
    def one_body(changes: list[tuple[JsonPath, Any]]) -> None:
        body = base
        for where, value in changes:
            try:
                body = replaced(body, where, value)
            except (IndexError, KeyError, TypeError):
                continue  # an earlier change removed this place
        assert_answered(path, http.post(path, content=raw_json(body)))

    one_body()
    assert http.post(path, content=raw_json(base)).status_code == 200  # still serving


IDS = st.one_of(
    st.text(min_size=1, max_size=12),
    SURROGATES,
    INTEGERS.map(str),
    st.sampled_from(["..", "%", "a/b", "\x00", "resp_" + "9" * 300, "\uffff", "tiny-llama/../x"]),
)


@pytest.mark.parametrize(
    ("method", "template"),
    [
        ("GET", "/v1/responses/{}"),
        ("DELETE", "/v1/responses/{}"),
        ("GET", "/v1/models/{}"),
        ("GET", "/anthropic/v1/models/{}"),
    ],
)
def test_any_id_in_the_path_is_never_a_server_error(http: httpx.Client, method: str, template: str) -> None:
    @FUZZ
    @given(IDS)
    def one_id(value: str) -> None:
        # Percent-encoded bytes, surrogates as their (invalid) UTF-8 form: what a raw client can put in a URL.
        url = template.format(quote(value.encode("utf-8", "surrogatepass"), safe=""))
        assert_answered(template, http.request(method, url))

    one_id()
    assert http.get("/v1/models/tiny-llama").status_code == 200
