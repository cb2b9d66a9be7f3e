"""The openai SDK's responses calls run unchanged: text, tools, json_schema, streaming events, stored history."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from mlx_manager.testing.server import ServerProcess

PARAMS: Any = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS: Any = [{"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": PARAMS}]


def test_a_text_response_has_output_text_usage_and_incomplete_status_at_the_limit(client: openai.OpenAI) -> None:
    out = client.responses.create(model="tiny-llama", input="Hi", instructions="Be brief.", max_output_tokens=6)
    assert out.id.startswith("resp_") and out.object == "response" and out.model == "tiny-llama"
    assert (
        out.status == "incomplete" and out.incomplete_details and out.incomplete_details.reason == "max_output_tokens"
    )
    (message,) = out.output
    assert message.type == "message" and message.role == "assistant" and message.content[0].type == "output_text"
    assert out.output_text == message.content[0].text
    assert out.usage and out.usage.output_tokens == 6 and out.usage.input_tokens > 0
    assert out.usage.total_tokens == out.usage.input_tokens + out.usage.output_tokens


def test_input_items_with_function_calls_and_outputs_are_rendered(client: openai.OpenAI) -> None:
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "12 degrees"},
    ]
    short = client.responses.create(model="tiny-qwen3", input=items[:1], tools=TOOLS, max_output_tokens=1)
    full = client.responses.create(model="tiny-qwen3", input=items, tools=TOOLS, max_output_tokens=1)
    assert full.usage and short.usage and full.usage.input_tokens > short.usage.input_tokens + 10


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen3", "tiny-gpt-oss"])
def test_required_tool_choice_returns_a_valid_function_call(client: openai.OpenAI, model: str) -> None:
    out = client.responses.create(
        model=model,
        input="Weather?",
        tools=TOOLS,
        tool_choice="required",
        max_output_tokens=80,
        extra_body={"max_reasoning_tokens": 4} if model != "tiny-llama" else None,
    )
    calls = [o for o in out.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_weather" and calls[0].call_id.startswith("call_")
    jsonschema.validate(json.loads(calls[0].arguments), PARAMS)
    assert out.status == "completed"


def test_json_schema_text_format_is_enforced(client: openai.OpenAI) -> None:
    fmt: Any = {"format": {"type": "json_schema", "name": "w", "schema": PARAMS, "strict": True}}
    out = client.responses.create(model="tiny-mistral", input="x", text=fmt, max_output_tokens=60)
    jsonschema.validate(json.loads(out.output_text), PARAMS)


def test_streaming_events_build_the_same_items_as_the_final_response(client: openai.OpenAI) -> None:
    kwargs: Any = {"model": "tiny-deepseek-r1", "input": "Weather?", "tools": TOOLS, "tool_choice": "required"}
    kwargs.update(max_output_tokens=80, extra_body={"max_reasoning_tokens": 4})
    with client.responses.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [o.type for o in final.output] == ["reasoning", "function_call"]
    assert "response.reasoning_text.delta" in kinds and "response.function_call_arguments.delta" in kinds
    added = [e.item.type for e in events if e.type == "response.output_item.added"]
    done = [e.item for e in events if e.type == "response.output_item.done"]
    assert added == [o.type for o in final.output] == [d.type for d in done]
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert args == final.output[1].arguments  # type: ignore[union-attr]
    jsonschema.validate(json.loads(args), PARAMS)
    reasoning = "".join(e.delta for e in events if e.type == "response.reasoning_text.delta")
    assert reasoning and final.output[0].content and final.output[0].content[0].text == reasoning  # type: ignore[union-attr]


def test_text_deltas_stream_as_output_text(client: openai.OpenAI) -> None:
    full = client.responses.create(model="tiny-llama", input="Hi", max_output_tokens=10, temperature=0)
    events = list(
        client.responses.create(model="tiny-llama", input="Hi", max_output_tokens=10, temperature=0, stream=True)
    )
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == full.output_text
    assert events[-1].type == "response.incomplete"


def test_previous_response_id_continues_the_stored_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model="tiny-gemma3", input="Tell me about the sea. " * 8, max_output_tokens=5)
    second = client.responses.create(
        model="tiny-gemma3", input="More.", previous_response_id=first.id, max_output_tokens=3
    )
    alone = client.responses.create(model="tiny-gemma3", input="More.", max_output_tokens=3)
    assert second.previous_response_id == first.id
    assert second.usage and alone.usage and first.usage
    assert second.usage.input_tokens > alone.usage.input_tokens + first.usage.output_tokens - 2
    assert second.usage.input_tokens_details.cached_tokens > 0  # the first turn's prompt is reused
    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="tiny-gemma3", input="x", previous_response_id=first.id)


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    out = client.responses.create(model="tiny-llama", input="Hi", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(out.id)


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"model": "tiny-llama", "input": "x", "tools": [{"type": "web_search"}]}, "function tools"),
        ({"model": "tiny-llama", "input": [{"type": "input_image", "image_url": "http://x"}]}, "input_image"),
        ({"model": "tiny-llama", "input": "x", "background": True}, "background"),
        ({"model": "tiny-llama", "input": "x", "frequency": 2}, "frequency"),
    ],
)
def test_unsupported_requests_are_a_400_naming_what(server: ServerProcess, body: Any, word: str) -> None:
    resp = httpx.post(f"{server.base_url}/v1/responses", json=body, timeout=60)
    assert resp.status_code == 400, resp.text
    assert word in resp.json()["error"]["message"]


def test_top_k_min_p_and_repetition_penalty_reach_the_engine(client: openai.OpenAI, server: ServerProcess) -> None:
    # vLLM's sampling extensions, as chat completions take them: top_k 1 at a high temperature is greedy.
    ask: Any = {"model": "tiny-llama", "input": "Once upon a time", "max_output_tokens": 8}
    greedy = client.responses.create(**ask, temperature=0)
    top_1 = client.responses.create(**ask, temperature=1.5, extra_body={"top_k": 1, "min_p": 0.1})
    assert top_1.output_text == greedy.output_text
    penalised = client.responses.create(**ask, temperature=0, extra_body={"repetition_penalty": 1.3})
    assert penalised.usage and penalised.usage.output_tokens == 8
    for field, value in (("top_k", -2), ("min_p", 2), ("repetition_penalty", 0)):
        resp = httpx.post(f"{server.base_url}/v1/responses", json={**ask, field: value}, timeout=60)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == field, resp.text
