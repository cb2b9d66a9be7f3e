"""Structured output and forced tool calls are enforced during generation, even by random-weight models."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonschema
import openai
import pytest

from mlx_manager.testing.server import ServerProcess
from tests.api.helpers import FAMILY_MODELS

FAMILIES = FAMILY_MODELS
# A random model seldom closes a reasoning block on its own: a budget makes the grammar close it.
REASONING = {"tiny-qwen3", "tiny-glm4", "tiny-deepseek-r1", "tiny-gpt-oss"}
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "temperature": {"type": "integer", "minimum": -50, "maximum": 60},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "temperature", "sunny"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 10}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "integer", "minimum": 0, "maximum": 999},
                    "b": {"type": "integer", "minimum": 0, "maximum": 999},
                },
                "required": ["a", "b"],
                "additionalProperties": False,
            },
        },
    },
]
ASK = [{"role": "user", "content": "Weather in Paris as JSON."}]
JSON_SCHEMA_FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}


def _budget(model: str) -> dict[str, Any]:
    return {"extra_body": {"max_reasoning_tokens": 6}} if model in REASONING else {}


def _params(name: str) -> dict[str, Any]:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_validates(client: openai.OpenAI, model: str, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": ASK,
        "max_tokens": 120,
        "response_format": JSON_SCHEMA_FORMAT,
        **_budget(model),
    }
    if stream:
        text = "".join(
            c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs, stream=True) if c.choices
        )
    else:
        out = client.chat.completions.create(**kwargs)
        assert out.choices[0].finish_reason == "stop"
        text = out.choices[0].message.content or ""
    jsonschema.validate(json.loads(text), SCHEMA)


def test_json_object_output_is_an_object(client: openai.OpenAI) -> None:
    # Any object may run on (a random model happily writes long strings): when it ends, it must parse.
    out = client.chat.completions.create(
        model="tiny-qwen3",
        messages=ASK,
        max_tokens=200,
        response_format={"type": "json_object"},  # type: ignore[arg-type]
        extra_body={"max_reasoning_tokens": 4},
    )
    text = out.choices[0].message.content or ""
    assert text.lstrip().startswith("{")
    if out.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:
        assert out.choices[0].finish_reason == "length"


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("stream", [False, True])
def test_required_tool_call_is_valid_for_every_family(client: openai.OpenAI, model: str, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": ASK,
        "max_tokens": 100,
        "tools": TOOLS,
        "tool_choice": "required",
        # Greedy: sampled from a random model, whitespace and string runs inside the call could outlast max_tokens.
        "temperature": 0,
        **_budget(model),
    }
    if not stream:
        out = client.chat.completions.create(**kwargs)
        choice = out.choices[0]
        assert choice.finish_reason == "tool_calls"
        assert not choice.message.content
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    else:
        acc: dict[int, list[str]] = {}
        finish = None
        for chunk in client.chat.completions.create(**kwargs, stream=True):
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            assert not delta.content
            for tc in delta.tool_calls or []:
                entry = acc.setdefault(tc.index, ["", "", ""])
                entry[0] = tc.id or entry[0]
                entry[1] = (tc.function.name if tc.function else None) or entry[1]
                entry[2] += (tc.function.arguments if tc.function else None) or ""
            finish = chunk.choices[0].finish_reason or finish
        assert finish == "tool_calls"
        calls = [tuple(v) for _, v in sorted(acc.items())]  # type: ignore[misc]
    assert calls
    for call_id, name, arguments in calls:
        assert call_id.startswith("call_")
        jsonschema.validate(json.loads(arguments), _params(name))


def test_named_tool_choice_calls_that_function(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-qwen3",
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=60,
        tools=TOOLS,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "add"}},
        extra_body={"max_reasoning_tokens": 4},
    )
    (call,) = out.choices[0].message.tool_calls or []
    assert call.function.name == "add"  # type: ignore[union-attr]
    jsonschema.validate(json.loads(call.function.arguments), _params("add"))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("schema", "word"),
    [({"type": "string", "format": "color"}, "color"), ({"type": "object", "not": {"required": ["a"]}}, "not")],
)
def test_unsupported_schema_features_are_a_400_naming_them(server: ServerProcess, schema: Any, word: str) -> None:
    import httpx

    body = {
        "model": "tiny-llama",
        "messages": ASK,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400, resp.text
    assert word in resp.json()["error"]["message"]


@pytest.mark.parametrize("model", FAMILIES)
def test_eight_concurrent_requests_mix_constrained_and_free_in_one_batch(server: ServerProcess, model: str) -> None:
    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0, timeout=120)
        jobs = []
        for i in range(8):
            kwargs: dict[str, Any] = {"model": model, "messages": ASK, "max_tokens": 120, "seed": i}
            if i % 3 != 2:
                kwargs.update(_budget(model))
            if i % 3 == 0:
                kwargs["response_format"] = JSON_SCHEMA_FORMAT
            elif i % 3 == 1:
                kwargs.update(tools=TOOLS, tool_choice="required")
            jobs.append(client.chat.completions.create(**kwargs))
        outs = await asyncio.gather(*jobs)
        await client.close()
        for i, out in enumerate(outs):
            message = out.choices[0].message
            if i % 3 == 0:
                jsonschema.validate(json.loads(message.content or ""), SCHEMA)
            elif i % 3 == 1:
                for call in message.tool_calls or []:
                    jsonschema.validate(json.loads(call.function.arguments), _params(call.function.name))  # type: ignore[union-attr]
                assert message.tool_calls and out.choices[0].finish_reason == "tool_calls"
            else:
                assert out.choices[0].finish_reason == "length"

    asyncio.run(main())


@pytest.mark.parametrize("model", ["tiny-deepseek-r1", "tiny-gpt-oss"])
@pytest.mark.parametrize("force_tool", [False, True])
def test_constrained_output_follows_the_reasoning_it_allows(
    client: openai.OpenAI, model: str, force_tool: bool
) -> None:
    # deepseek-r1's template opens <think> (reasoning required); gpt-oss may start with an analysis message.
    kwargs: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required"} if force_tool else {}
    reasoned = 0
    for seed in range(4):
        out = client.chat.completions.create(
            model=model,
            messages=ASK,  # type: ignore[arg-type]
            max_tokens=100,
            seed=seed,
            response_format=None if force_tool else JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
            extra_body={"max_reasoning_tokens": 5},
            **kwargs,
        )
        message = out.choices[0].message
        reasoning = getattr(message, "reasoning_content", None) or ""
        assert "<" not in reasoning
        reasoned += bool(reasoning)
        if force_tool:
            (call, *_) = message.tool_calls or []
            jsonschema.validate(json.loads(call.function.arguments), _params(call.function.name))  # type: ignore[union-attr]
        else:
            jsonschema.validate(json.loads(message.content or ""), SCHEMA)
    assert reasoned == 4 if model == "tiny-deepseek-r1" else reasoned > 0


def test_thinking_switched_off_constrains_from_the_first_token(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-qwen3",
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=100,
        response_format=JSON_SCHEMA_FORMAT,  # type: ignore[arg-type]
        extra_body={"reasoning_effort": "none"},
    )
    assert not getattr(out.choices[0].message, "reasoning_content", None)
    jsonschema.validate(json.loads(out.choices[0].message.content or ""), SCHEMA)
