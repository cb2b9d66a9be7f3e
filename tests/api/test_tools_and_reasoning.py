"""Tools reach every family's prompt, tool results are fed back, and reasoning never leaks into content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.api.helpers import FAMILY_MODELS
from tests.conftest import token_id

FAMILIES = FAMILY_MODELS
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.mark.parametrize("model", FAMILIES)
def test_tools_are_rendered_into_the_prompt(client: openai.OpenAI, model: str) -> None:
    plain = client.chat.completions.create(model=model, messages=ASK, max_tokens=1)  # type: ignore[arg-type]
    with_tools = client.chat.completions.create(model=model, messages=ASK, max_tokens=1, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert plain.usage is not None and with_tools.usage is not None
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 10
    none = client.chat.completions.create(
        model=model,
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=1,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="none",
    )
    assert none.usage is not None and none.usage.prompt_tokens == plain.usage.prompt_tokens


@pytest.mark.parametrize("model", FAMILIES)
def test_a_tool_result_is_fed_back_in_every_family(client: openai.OpenAI, model: str) -> None:
    messages: list[dict[str, Any]] = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C and sunny"},
    ]
    out = client.chat.completions.create(model=model, messages=messages, max_tokens=3, tools=[WEATHER])  # type: ignore[arg-type, list-item]
    assert out.choices[0].finish_reason in ("length", "stop")
    assert out.usage is not None and out.usage.prompt_tokens > 20


def test_reasoning_goes_to_reasoning_content_not_content(client: openai.OpenAI, tiny_models: dict[str, Path]) -> None:
    think = token_id(tiny_models["tiny-qwen3"], "<think>")
    kwargs: dict[str, Any] = {"model": "tiny-qwen3", "messages": ASK, "max_tokens": 6, "temperature": 0}
    out = client.chat.completions.create(**kwargs, logit_bias={str(think): 100})
    message = out.choices[0].message
    assert not message.content
    assert getattr(message, "reasoning_content", None)
    stream = client.chat.completions.create(**kwargs, logit_bias={str(think): 100}, stream=True)
    content, reasoning = "", ""
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            content += delta.content or ""
            reasoning += getattr(delta, "reasoning_content", None) or ""
    assert content == "" and reasoning == message.reasoning_content  # type: ignore[attr-defined]


def test_without_reasoning_tags_everything_is_content(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny-qwen3", messages=ASK, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    assert out.choices[0].message.content
    assert getattr(out.choices[0].message, "reasoning_content", None) is None


def test_reasoning_effort_none_switches_qwen3_thinking_off(client: openai.OpenAI) -> None:
    on = client.chat.completions.create(model="tiny-qwen3", messages=ASK, max_tokens=1)  # type: ignore[arg-type]
    off = client.chat.completions.create(
        model="tiny-qwen3",
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=1,
        reasoning_effort="none",  # type: ignore[arg-type]
    )
    explicit = client.chat.completions.create(
        model="tiny-qwen3",
        messages=ASK,  # type: ignore[arg-type]
        max_tokens=1,
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert on.usage is not None and off.usage is not None and explicit.usage is not None
    # The template adds an empty <think></think> block when thinking is off.
    assert off.usage.prompt_tokens == explicit.usage.prompt_tokens > on.usage.prompt_tokens


def test_xhigh_effort_reads_as_high_in_chat_and_in_responses(client: openai.OpenAI) -> None:
    # gpt-oss's template takes low, medium and high; the one effort table maps xhigh to high for every API.
    def chat(effort: str) -> int:
        out = client.chat.completions.create(model="tiny-gpt-oss", messages=ASK, max_tokens=1, reasoning_effort=effort)  # type: ignore[arg-type]
        assert out.usage is not None
        return out.usage.prompt_tokens

    reply = client.responses.create(
        model="tiny-gpt-oss", input=ASK[0]["content"], reasoning={"effort": "xhigh"}, max_output_tokens=1
    )
    assert reply.usage is not None
    assert chat("xhigh") == chat("high") == reply.usage.input_tokens


def test_a_template_that_opens_think_sends_generation_to_reasoning(client: openai.OpenAI) -> None:
    # DeepSeek-R1's generation prompt ends with "<think>\n": until </think> everything is reasoning.
    out = client.chat.completions.create(model="tiny-deepseek-r1", messages=ASK, max_tokens=8, temperature=0)  # type: ignore[arg-type]
    message = out.choices[0].message
    assert not message.content
    assert getattr(message, "reasoning_content", None)


def test_a_reasoning_budget_forces_the_end_tag_and_leaves_room_for_the_answer(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": "tiny-deepseek-r1", "messages": ASK, "max_tokens": 12, "temperature": 0}
    unlimited = client.chat.completions.create(**kwargs)
    assert not unlimited.choices[0].message.content  # this random model never closes </think> by itself
    budgeted = client.chat.completions.create(**kwargs, extra_body={"max_reasoning_tokens": 3})
    message = budgeted.choices[0].message
    assert getattr(message, "reasoning_content", None)
    assert message.content  # after 3 reasoning tokens and the forced </think>, the answer follows
    reasoning = getattr(unlimited.choices[0].message, "reasoning_content", "")
    assert reasoning.startswith(message.reasoning_content)  # type: ignore[attr-defined]


def test_a_reasoning_budget_for_a_model_without_reasoning_is_a_400(server: Any) -> None:
    import httpx

    body = {"model": "tiny-llama", "messages": ASK, "max_reasoning_tokens": 5}
    resp = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=60)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "max_reasoning_tokens"
