"""Errors in OpenAI's shape with the right status codes, and a request id on every response."""

from __future__ import annotations

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

MSG = [{"role": "user", "content": "hi"}]


def _post(server: ServerProcess, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.base_url}{path}", json=body, timeout=30)


def _assert_openai_error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["message"]
    assert error["request_id"] == resp.headers["x-request-id"]
    return dict(error)


def test_unknown_model_is_404_with_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MSG)  # type: ignore[arg-type]
    assert info.value.code == "model_not_found"


def test_get_unknown_model_is_404(server: ServerProcess) -> None:
    resp = httpx.get(f"{server.base_url}/v1/models/nope/nope")
    _assert_openai_error(resp, 404)


def test_model_ids_with_slashes_resolve(client: openai.OpenAI) -> None:
    assert client.models.retrieve("tiny-llama").id == "tiny-llama"
    assert {"tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3"} <= {m.id for m in client.models.list()}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "tiny-llama", "messages": MSG, "temperature": 5}, "temperature"),
        ({"model": "tiny-llama", "messages": []}, "messages"),
        ({"model": "tiny-llama"}, "messages"),
        ({"model": "tiny-llama", "messages": MSG, "unknown_knob": 1}, "unknown_knob"),
        ({"model": "tiny-llama", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "tiny-llama", "messages": MSG, "top_logprobs": 2}, None),
        ({"model": "tiny-llama", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ],
)
def test_invalid_requests_are_400_not_422(server: ServerProcess, body: dict[str, object], param: str | None) -> None:
    error = _assert_openai_error(_post(server, "/v1/chat/completions", body), 400)
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


def test_invalid_json_is_400(server: ServerProcess) -> None:
    resp = httpx.post(
        f"{server.base_url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    _assert_openai_error(resp, 400)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function"}]}, "tools.0"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "x"}}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        ({"n": 99}, "n"),
        ({"stop": [str(i) for i in range(40)]}, "stop"),
        ({"logit_bias": {"999999": 5}}, "logit_bias"),
    ],
)
def test_parameters_that_cannot_be_honoured_are_rejected(
    server: ServerProcess, extra: dict[str, object], param: str
) -> None:
    body = {"model": "tiny-llama", "messages": MSG, **extra}
    error = _assert_openai_error(_post(server, "/v1/chat/completions", body), 400)
    assert error["param"] == param


def test_context_overflow_is_400_with_the_numbers(server: ServerProcess) -> None:
    body = {"model": "tiny-llama", "messages": MSG, "max_tokens": 5000}
    error = _assert_openai_error(_post(server, "/v1/chat/completions", body), 400)
    assert error["code"] == "context_length_exceeded"
    assert "2048" in str(error["message"]) and "5000" in str(error["message"])


def test_long_prompt_overflow_is_400(server: ServerProcess) -> None:
    body = {"model": "tiny-llama", "prompt": list(range(300, 400)) * 25, "max_tokens": 10}
    error = _assert_openai_error(_post(server, "/v1/completions", body), 400)
    assert error["code"] == "context_length_exceeded"


def test_suffix_and_best_of_are_rejected_on_completions(server: ServerProcess) -> None:
    for extra in ({"suffix": "x"}, {"best_of": 3}):
        body = {"model": "tiny-llama", "prompt": "a", **extra}
        _assert_openai_error(_post(server, "/v1/completions", body), 400)


def test_unknown_route_and_wrong_method_use_the_error_shape(server: ServerProcess) -> None:
    _assert_openai_error(httpx.get(f"{server.base_url}/v1/nothing-here"), 404)
    _assert_openai_error(httpx.get(f"{server.base_url}/v1/chat/completions"), 405)


def test_request_id_is_generated_or_echoed(server: ServerProcess) -> None:
    generated = httpx.get(f"{server.base_url}/health")
    assert generated.headers["x-request-id"].startswith("req-")
    echoed = httpx.get(f"{server.base_url}/v1/models", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"


def test_both_sdks_see_the_request_id_in_the_error_body_and_header(server: ServerProcess) -> None:
    import anthropic

    with pytest.raises(openai.NotFoundError) as oa:
        openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0).models.retrieve("nope")
    assert isinstance(oa.value.body, dict) and oa.value.body["request_id"] == oa.value.request_id
    assert str(oa.value.request_id).startswith("req-")
    with pytest.raises(anthropic.NotFoundError) as an:
        anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0).messages.create(
            model="nope", max_tokens=2, messages=[{"role": "user", "content": "hi"}]
        )
    # Anthropic's shape: request_id at the top level of the body, and its own `request-id` header.
    assert isinstance(an.value.body, dict) and an.value.body["request_id"] == an.value.request_id
    assert an.value.response.headers["x-request-id"] == an.value.request_id


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"logit_bias": {"²": 1}}, "logit_bias"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"seed": 2**70}, "seed"),  # any signed 64-bit seed is taken, as OpenAI types it; past that a 400
        ({"stream": True, "stream_options": {"continuous_usage_stats": True}}, "stream_options.continuous_usage_stats"),
    ],
)
def test_more_bad_values_are_400(server: ServerProcess, body: dict[str, object], param: str) -> None:
    resp = _post(server, "/v1/chat/completions", {"model": "tiny-llama", "messages": MSG, **body})
    _assert_openai_error(resp, 400)


@pytest.mark.parametrize(
    "extra",
    [{"seed": -1}, {"seed": 2**63 - 1}, {"top_k": 100000}, {"temperature": None, "n": None, "top_p": None}],
)
def test_edge_values_are_served_not_500(server: ServerProcess, extra: dict[str, object]) -> None:
    body = {"model": "tiny-llama", "messages": MSG, "max_tokens": 3, "temperature": 0.7, **extra}
    resp = _post(server, "/v1/chat/completions", body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["completion_tokens"] == 3


def test_completion_overflow_names_the_prompt(server: ServerProcess) -> None:
    body = {"model": "tiny-llama", "prompt": "hi", "max_tokens": 5000}
    error = _assert_openai_error(_post(server, "/v1/completions", body), 400)
    assert error["param"] == "prompt"
