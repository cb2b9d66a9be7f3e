"""Forced tool use: Anthropic's reply is the tool_use alone; OpenAI's may reason first, but the call still fits."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import jsonschema
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

REASONING = ["tiny-qwen3", "tiny-glm4", "tiny-deepseek-r1", "tiny-gpt-oss"]
ASK: Any = [{"role": "user", "content": "Weather in Oslo?"}]
CITY: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER: Any = {"name": "get_weather", "description": "Current weather for a city", "input_schema": CITY}
NOOP: Any = {"name": "noop", "input_schema": {"type": "object", "properties": {}, "additionalProperties": False}}
FUNCTIONS: Any = [
    {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in (WEATHER, NOOP)
]


@pytest.fixture(scope="module")
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


@pytest.mark.parametrize("model", [*REASONING, "tiny-llama", "tiny-mistral"])
@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_anthropic_forced_tool_use_is_the_whole_reply(claude: anthropic.Anthropic, model: str, choice: Any) -> None:
    kwargs: Any = {"model": model, "max_tokens": 60, "messages": ASK, "tools": [WEATHER], "tool_choice": choice}
    out = claude.messages.create(**kwargs)
    assert [b.type for b in out.content] == ["tool_use"] and out.stop_reason == "tool_use"
    assert out.content[0].name == "get_weather"
    jsonschema.validate(out.content[0].input, CITY)
    with claude.messages.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    deltas = {e.delta.type for e in events if e.type == "content_block_delta"}
    assert starts == ["tool_use"] and deltas == {"input_json_delta"}
    assert [b.type for b in final.content] == ["tool_use"] and final.stop_reason == "tool_use"
    jsonschema.validate(final.content[0].input, CITY)  # type: ignore[union-attr]


def test_anthropic_forced_tool_use_with_thinking_disabled_is_allowed(claude: anthropic.Anthropic) -> None:
    out = claude.messages.create(
        model="tiny-deepseek-r1",
        max_tokens=60,
        messages=ASK,
        tools=[WEATHER, NOOP],
        tool_choice={"type": "tool", "name": "noop"},
        thinking={"type": "disabled"},
    )
    assert [(b.type, getattr(b, "name", None), getattr(b, "input", None)) for b in out.content] == [
        ("tool_use", "noop", {})
    ]


@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 8}, {"type": "adaptive"}])
@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_anthropic_thinking_with_forced_tool_use_is_a_400_in_anthropics_words(
    server: ServerProcess, thinking: Any, choice: Any
) -> None:
    body = {"model": "tiny-qwen3", "max_tokens": 60, "messages": ASK, "tools": [WEATHER], "tool_choice": choice}
    resp = httpx.post(f"{server.base_url}/v1/messages", json={**body, "thinking": thinking}, timeout=60)
    assert resp.status_code == 400
    err = resp.json()
    assert err["type"] == "error" and err["error"] == {
        "type": "invalid_request_error",
        "message": "Thinking may not be enabled when tool_choice forces tool use.",
    }


def _openai_call(out: Any) -> tuple[str, Any]:
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls or []
    return call.function.name, json.loads(call.function.arguments)


@pytest.mark.parametrize("model", REASONING)
def test_openai_required_call_fits_in_a_small_max_tokens_without_a_reasoning_budget(
    client: openai.OpenAI, model: str
) -> None:
    # Unbounded, a random model reasons until max_tokens runs out and never calls.
    for seed in range(3):
        out = client.chat.completions.create(
            model=model, messages=ASK, max_tokens=60, tools=FUNCTIONS[:1], tool_choice="required", seed=seed
        )
        name, args = _openai_call(out)
        assert name == "get_weather"
        jsonschema.validate(args, CITY)


def test_openai_reasoning_is_bounded_not_removed_when_there_is_room(client: openai.OpenAI) -> None:
    # deepseek-r1's template opens <think>: it reasons every time, and the call still comes within max_tokens.
    for seed in range(3):
        out = client.chat.completions.create(
            model="tiny-deepseek-r1",
            messages=ASK,
            max_tokens=100,
            tools=FUNCTIONS,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            seed=seed,
        )
        assert getattr(out.choices[0].message, "reasoning_content", None)
        name, args = _openai_call(out)
        assert name == "get_weather"
        jsonschema.validate(args, CITY)
        assert out.usage and out.usage.completion_tokens <= 100


def test_openai_streamed_required_call_fits_too(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-glm4", messages=ASK, max_tokens=60, tools=FUNCTIONS[:1], tool_choice="required", stream=True
    )
    arguments, finish = "", None
    for chunk in stream:
        if chunk.choices:
            for tc in chunk.choices[0].delta.tool_calls or []:
                arguments += (tc.function.arguments if tc.function else None) or ""
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), CITY)


@pytest.mark.parametrize("model", ["tiny-deepseek-r1", "tiny-llama"])
def test_a_max_tokens_too_small_for_any_call_is_a_400_naming_it(server: ServerProcess, model: str) -> None:
    body = {"model": model, "messages": ASK, "max_tokens": 8, "tools": FUNCTIONS, "tool_choice": "required"}
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "max_tokens" and "forced tool call needs at least" in error["message"]
    resp = httpx.post(
        f"{server.base_url}/v1/messages",
        json={"model": model, "max_tokens": 8, "messages": ASK, "tools": [WEATHER], "tool_choice": {"type": "any"}},
        timeout=60,
    )
    assert resp.status_code == 400 and "forced tool call needs at least" in resp.json()["error"]["message"]


def test_responses_required_call_fits_in_max_output_tokens(client: openai.OpenAI) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "parameters": CITY}
    out = client.responses.create(
        model="tiny-deepseek-r1", input="Weather?", tools=[tool], tool_choice="required", max_output_tokens=100
    )
    assert out.status == "completed"
    assert [o.type for o in out.output] == ["reasoning", "function_call"]
    call = out.output[1]
    assert call.type == "function_call"
    jsonschema.validate(json.loads(call.arguments), CITY)
