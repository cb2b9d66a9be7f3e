"""Bad input on the model-serving APIs is a 400 in the API's own shape naming the field, never a 500: lone
surrogates (sent as JSON escapes) anywhere in a body, integers past 64 bits, wrong-typed entries in nested content."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess

BEYOND = 2**63  # one past the largest signed 64-bit integer
LONE = "\ud800"
HI = [{"role": "user", "content": "hi"}]


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    # ensure_ascii writes a lone surrogate as the escape \ud800, as a client's JSON carries it.
    raw = json.dumps(body, ensure_ascii=True).encode()
    return httpx.post(f"{server.base_url}{path}", content=raw, headers={"content-type": "application/json"}, timeout=60)


def assert_names(path: str, reply: httpx.Response, field: str) -> None:
    """A 400 in the route's own error shape that names the field."""
    assert reply.status_code == 400, reply.text
    body = reply.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
        assert f"'{field}'" in body["error"]["message"], body
    else:
        assert body["error"]["type"] == "invalid_request_error", body
        assert body["error"]["param"] == field, body


CHAT = {"model": "tiny-llama", "max_tokens": 2}
MESSAGES = {"model": "tiny-llama", "max_tokens": 2}
EMBED = {"model": "all-MiniLM-L6-v2"}
RERANK = {"model": "tiny-cross-encoder"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": LONE}]}, "messages.0.content"),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": [{"role": "user", "content": [{"type": "text", "text": f"a{LONE}"}]}]},
            "messages.0.content.0.text",
        ),
        (
            "/v1/chat/completions",
            {
                **CHAT,
                "messages": [
                    *HI,
                    {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": LONE}}]},
                    {"role": "tool", "tool_call_id": "c", "content": "ok"},
                ],
            },
            "messages.1.tool_calls.0.function.arguments",
        ),
        ("/v1/chat/completions", {**CHAT, "messages": HI, "stream": True, "stop": [LONE]}, "stop.0"),
        (
            "/v1/chat/completions",
            {**CHAT, "messages": HI, "tools": [{"type": "function", "function": {"name": "f", "description": LONE}}]},
            "tools.0.function.description",
        ),
        ("/v1/chat/completions", {**CHAT, "messages": HI, "metadata": {"k": "\udfff"}}, "metadata.k"),
        ("/v1/completions", {**CHAT, "prompt": ["ok", LONE]}, "prompt.1"),
        ("/v1/messages", {**MESSAGES, "messages": [{"role": "user", "content": LONE}]}, "messages.0.content"),
        ("/v1/messages", {**MESSAGES, "messages": HI, "system": [{"type": "text", "text": LONE}]}, "system.0.text"),
        (
            "/v1/messages",
            {
                **MESSAGES,
                "messages": [
                    *HI,
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"a": LONE}}],
                    },
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]},
                ],
            },
            "messages.1.content.0.input.a",
        ),
        ("/v1/messages/count_tokens", {"model": LONE, "messages": HI}, "model"),
        ("/v1/messages/count_tokens", {"model": "tiny-llama", "messages": HI, "system": LONE}, "system"),
        ("/v1/responses", {"model": "tiny-llama", "input": LONE}, "input"),
        (
            "/v1/responses",
            {"model": "tiny-llama", "input": [{"role": "user", "content": [{"type": "input_text", "text": LONE}]}]},
            "input.0.content.0.text",
        ),
        ("/v1/responses", {"model": "tiny-llama", "input": "hi", "instructions": LONE}, "instructions"),
        ("/v1/embeddings", {**EMBED, "input": ["ok", LONE]}, "input.1"),
        ("/v1/rerank", {**RERANK, "query": LONE, "documents": ["a"]}, "query"),
        ("/v1/rerank", {**RERANK, "query": "q", "documents": ["a", {"text": LONE}]}, "documents.1.text"),
        ("/rerank", {**RERANK, "query": "q", "documents": [LONE]}, "documents.0"),
    ],
)
def test_a_lone_surrogate_anywhere_is_a_400_naming_where(
    embedding_server: ServerProcess, path: str, body: dict[str, Any], field: str
) -> None:
    assert_names(path, post(embedding_server, path, body), field)


def test_a_lone_surrogate_in_a_key_names_the_object_holding_it(embedding_server: ServerProcess) -> None:
    reply = post(embedding_server, "/v1/chat/completions", {**CHAT, "messages": HI, "logit_bias": {LONE: 1}})
    assert_names("/v1/chat/completions", reply, "logit_bias")
    reply = post(embedding_server, "/v1/messages", {**MESSAGES, "messages": HI, LONE: 1})
    assert reply.status_code == 400 and reply.json()["type"] == "error", reply.text


def test_bodies_python_cannot_read_are_a_400(embedding_server: ServerProcess) -> None:
    url = f"{embedding_server.base_url}/v1/chat/completions"
    json_type = {"content-type": "application/json"}
    long_number = b'{"model": "tiny-llama", "messages": [], "seed": ' + b"9" * 5000 + b"}"
    reply = httpx.post(url, content=long_number, headers=json_type, timeout=60)
    assert reply.status_code == 400 and "4300 digits" in reply.json()["error"]["message"], reply.text
    reply = httpx.post(url, content=b'{"model": "\xff"}', headers=json_type, timeout=60)
    assert reply.status_code == 400 and "not UTF-8" in reply.json()["error"]["message"], reply.text


@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/messages", "/v1/responses", "/api/chat", "/v1/embeddings"]
)
def test_a_body_nested_past_the_parsers_depth_is_a_400_in_the_apis_shape(
    embedding_server: ServerProcess, path: str
) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    for raw in (deep, b'{"model": "tiny-llama", "metadata": ' + deep + b"}"):
        reply = httpx.post(
            f"{embedding_server.base_url}{path}", content=raw, headers={"content-type": "application/json"}, timeout=60
        )
        assert reply.status_code == 400, reply.text
        text = reply.json()["error"] if path.startswith("/api/") else reply.json()["error"]["message"]
        assert "nests" in text and "128 levels" in text, reply.text


def _schema(depth: int) -> dict[str, Any]:
    nested: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        nested = {"type": "object", "properties": {"a": nested}}
    return nested


def test_a_schema_nested_past_the_limit_is_a_400_and_one_within_it_is_served(embedding_server: ServerProcess) -> None:
    """Templates, grammars and size checks walk a body recursively: 300 nested objects used to be a 500. Within
    the limit: a response format 60 objects deep (124 levels of body) is enforced; tools are rendered into the
    prompt, so theirs stay smaller to fit the tiny model's context."""
    for depth, tool_depth, ok in ((300, 300, False), (60, 10, True)):
        tool = {"type": "function", "function": {"name": "f", "parameters": _schema(tool_depth)}}
        schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": _schema(depth)}}
        for extra in ({"tools": [tool]}, {"tools": [tool], "tool_choice": "required"}, {"response_format": schema}):
            body = {**CHAT, "max_tokens": 64, "messages": HI, **extra}  # room for a forced call's fixed text
            reply = post(embedding_server, "/v1/chat/completions", body)
            if ok:
                assert reply.status_code == 200, reply.text
            else:
                assert reply.status_code == 400 and "128 levels" in reply.json()["error"]["message"], reply.text
                field = "tools.0.function.parameters.properties.a" if "tools" in extra else "response_format"
                assert reply.json()["error"]["param"].startswith(field), reply.text
        anthropic_tools = [{"name": "f", "input_schema": _schema(tool_depth)}]
        reply = post(embedding_server, "/v1/messages", {**MESSAGES, "messages": HI, "tools": anthropic_tools})
        assert reply.status_code == (200 if ok else 400), reply.text


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"id": 1, "function": {"name": "f", "arguments": "{}"}}, "messages.1.tool_calls.0.id"),
        ({"id": "c", "function": "f"}, "messages.1.tool_calls.0.function"),
        ({"id": "c", "function": {"name": 5, "arguments": "{}"}}, "messages.1.tool_calls.0.function.name"),
        ({"id": "c", "function": {"name": "f", "arguments": [1]}}, "messages.1.tool_calls.0.function.arguments"),
        ({"id": "c", "type": "web", "function": {"name": "f"}}, "messages.1.tool_calls.0.type"),
        ({"id": "c"}, "messages.1.tool_calls.0.function"),
        ("call", "messages.1.tool_calls.0"),
    ],
)
def test_a_wrong_typed_tool_calls_entry_is_a_400_naming_it(
    embedding_server: ServerProcess, entry: Any, field: str
) -> None:
    messages = [
        *HI,
        {"role": "assistant", "tool_calls": [entry]},
        {"role": "tool", "tool_call_id": "c", "content": "x"},
    ]
    reply = post(embedding_server, "/v1/chat/completions", {**CHAT, "messages": messages})
    assert_names("/v1/chat/completions", reply, field)


def test_tool_calls_with_arguments_as_an_object_are_still_taken(embedding_server: ServerProcess) -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"city": "Paris"}}}
    messages = [*HI, {"role": "assistant", "tool_calls": [call]}, {"role": "tool", "tool_call_id": "c", "content": "x"}]
    reply = post(embedding_server, "/v1/chat/completions", {**CHAT, "messages": messages})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/responses", {"model": "tiny-llama", "input": [{"role": "user", "content": 5}]}, "input.0.content"),
        (
            "/v1/responses",
            {"model": "tiny-llama", "input": [{"role": "user", "content": [{"type": "input_text", "text": 5}]}]},
            "input.0.content.0.text",
        ),
        (
            "/v1/responses",
            {"model": "tiny-llama", "input": [{"type": "function_call", "call_id": 5, "name": "f", "arguments": "{}"}]},
            "input.0.call_id",
        ),
        (
            "/v1/responses",
            {"model": "tiny-llama", "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}]},
            "input.0.arguments",
        ),
        ("/v1/responses", {"model": "tiny-llama", "input": [{"type": "reasoning", "summary": 5}]}, "input.0.summary"),
    ],
)
def test_wrong_typed_responses_input_is_a_400_naming_it(
    embedding_server: ServerProcess, path: str, body: dict[str, Any], field: str
) -> None:
    assert_names(path, post(embedding_server, path, {**body, "max_output_tokens": 2}), field)


NUMBERS = [
    ("/v1/chat/completions", {**CHAT, "messages": HI}, ["priority", "seed", "n", "top_k", "max_completion_tokens"]),
    ("/v1/chat/completions", {"model": "tiny-llama", "messages": HI}, ["max_tokens", "max_reasoning_tokens"]),
    ("/v1/chat/completions", {**CHAT, "messages": HI, "logprobs": True}, ["top_logprobs"]),
    ("/v1/completions", {**CHAT, "prompt": "hi"}, ["seed", "n", "best_of", "logprobs", "priority"]),
    ("/v1/messages", {"model": "tiny-llama", "messages": HI}, ["max_tokens"]),
    ("/v1/messages", {**MESSAGES, "messages": HI}, ["top_k"]),
    ("/v1/responses", {"model": "tiny-llama", "input": "hi"}, ["max_output_tokens", "max_reasoning_tokens"]),
    ("/v1/embeddings", {**EMBED, "input": "x"}, ["dimensions"]),
    ("/v1/rerank", {**RERANK, "query": "q", "documents": ["a"]}, ["top_n"]),
]


@pytest.mark.parametrize("number", [BEYOND, 2**64, 10**30, 10**400, -BEYOND - 1])
@pytest.mark.parametrize(("path", "base", "fields"), NUMBERS)
def test_integers_past_64_bits_are_a_400_naming_the_field(
    embedding_server: ServerProcess, path: str, base: dict[str, Any], fields: list[str], number: int
) -> None:
    for field in fields:
        assert_names(path, post(embedding_server, path, {**base, field: number}), field)


def test_the_largest_64_bit_seed_and_priority_are_taken(embedding_server: ServerProcess) -> None:
    body = {**CHAT, "messages": HI, "seed": BEYOND - 1, "priority": BEYOND - 1, "temperature": 1}
    assert post(embedding_server, "/v1/chat/completions", body).status_code == 200
    assert post(embedding_server, "/v1/chat/completions", {**body, "priority": -BEYOND}).status_code == 200


@pytest.mark.parametrize("key", [str(BEYOND), str(10**30), "9" * 5000, "-" + "1" * 40, "1e3", " 1"])
def test_logit_bias_keys_that_are_no_token_id_are_a_400_naming_it(embedding_server: ServerProcess, key: str) -> None:
    reply = post(embedding_server, "/v1/chat/completions", {**CHAT, "messages": HI, "logit_bias": {key: 1}})
    assert_names("/v1/chat/completions", reply, "logit_bias")
