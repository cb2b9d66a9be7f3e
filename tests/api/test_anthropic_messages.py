"""The official anthropic SDK runs unchanged against the server: text, streaming event order, tools, thinking."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import anthropic
import httpx
import jsonschema
import pytest

from mlx_manager.sse import iter_json
from mlx_manager.testing.server import ServerProcess

HI: Any = [{"role": "user", "content": "Say hi."}]
# The SDK dropped temperature from its signature (newer models fix it); the API still takes it.
GREEDY = {"temperature": 0}
WEATHER: Any = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def test_a_message_has_text_usage_and_max_tokens_stop(claude: anthropic.Anthropic) -> None:
    out = claude.messages.create(model="tiny-llama", max_tokens=8, system="Be brief.", messages=HI)
    assert out.id.startswith("msg_") and out.type == "message" and out.role == "assistant"
    assert out.model == "tiny-llama"
    assert [b.type for b in out.content] == ["text"]
    assert out.stop_reason == "max_tokens" and out.stop_sequence is None
    assert out.usage.output_tokens == 8
    counted = claude.messages.count_tokens(model="tiny-llama", system="Be brief.", messages=HI).input_tokens
    assert out.usage.input_tokens + out.usage.cache_read_input_tokens == counted > 0


def test_system_blocks_equal_a_system_string(claude: anthropic.Anthropic) -> None:
    blocks: Any = [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}},
    ]
    as_blocks = claude.messages.count_tokens(model="tiny-qwen3", system=blocks, messages=HI).input_tokens
    as_string = claude.messages.count_tokens(model="tiny-qwen3", system="Be brief.\nBe kind.", messages=HI).input_tokens
    assert as_blocks == as_string


def test_a_repeated_prompt_reads_the_prefix_cache(claude: anthropic.Anthropic) -> None:
    system = "You are a careful assistant. " * 20
    first = claude.messages.create(model="tiny-mistral", max_tokens=2, system=system, messages=HI)
    second = claude.messages.create(model="tiny-mistral", max_tokens=2, system=system, messages=HI)
    assert second.usage.cache_read_input_tokens > 0
    total = first.usage.input_tokens + first.usage.cache_read_input_tokens
    assert second.usage.input_tokens + second.usage.cache_read_input_tokens == total


def _sse(server: ServerProcess, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The raw event stream (the SDK hides pings), as (event name, data) pairs."""
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream("POST", f"{server.base_url}/v1/messages", json={**body, "stream": True}, timeout=60) as resp:
        assert resp.status_code == 200
        for name, data in iter_json(resp):
            assert data["type"] == name
            events.append((name, data))
    return events


def test_streaming_events_come_in_anthropics_order_with_usage(
    claude: anthropic.Anthropic, server: ServerProcess
) -> None:
    body: Any = {"model": "tiny-llama", "max_tokens": 12, "messages": HI}
    full = claude.messages.create(**body, extra_body=GREEDY)
    events = _sse(server, {**body, **GREEDY})
    kinds = [name for name, _ in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert set(kinds[3:-3]) == {"content_block_delta"} and len(kinds) > 6
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start, block, delta = events[0][1], events[2][1], events[-2][1]
    assert start["message"]["content"] == [] and start["message"]["stop_reason"] is None
    assert start["message"]["id"].startswith("msg_") and start["message"]["model"] == "tiny-llama"
    prompt = full.usage.input_tokens + full.usage.cache_read_input_tokens
    usage = start["message"]["usage"]
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == prompt and usage["output_tokens"] == 0
    assert block == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for _, d in events[3:-3])
    assert delta["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 12
    assert delta["usage"]["input_tokens"] + delta["usage"]["cache_read_input_tokens"] == prompt
    assert "".join(d["delta"]["text"] for _, d in events[3:-3]) == full.content[0].text  # type: ignore[union-attr]
    with claude.messages.stream(**body, extra_body=GREEDY) as stream:  # the SDK's own accumulator agrees
        assert stream.get_final_message().content[0].text == full.content[0].text  # type: ignore[union-attr]


def test_a_forced_tool_use_streams_as_the_only_block(server: ServerProcess) -> None:
    # deepseek-r1's template opens <think>; a forced call closes it unused (thinking may not be enabled with it).
    body = {"model": "tiny-deepseek-r1", "max_tokens": 60, "messages": HI, "tools": [WEATHER]}
    events = _sse(server, {**body, "tool_choice": {"type": "any"}})
    blocks = [d["content_block"]["type"] for n, d in events if n == "content_block_start"]
    assert blocks == ["tool_use"]
    for index, kind in enumerate(blocks):
        own = [d for n, d in events if d.get("index") == index]
        assert own[0]["type"] == "content_block_start" and own[-1]["type"] == "content_block_stop"
        deltas = {d["delta"]["type"] for d in own[1:-1]}
        assert (
            deltas
            <= {
                "thinking": {"thinking_delta", "signature_delta"},
                "tool_use": {"input_json_delta"},
                "text": {"text_delta"},
            }[kind]
        )
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_stop_sequences_end_with_stop_sequence_and_name_it(claude: anthropic.Anthropic) -> None:
    text = claude.messages.create(model="tiny-llama", max_tokens=30, extra_body=GREEDY, messages=HI).content[0].text  # type: ignore[union-attr]
    stop = text[6:10]
    out = claude.messages.create(
        model="tiny-llama", max_tokens=30, extra_body=GREEDY, messages=HI, stop_sequences=["zzzz-never", stop]
    )
    assert out.stop_reason == "stop_sequence" and out.stop_sequence == stop
    assert out.content[0].text == text[: text.index(stop)].lstrip()  # type: ignore[union-attr]
    with claude.messages.stream(
        model="tiny-llama", max_tokens=30, extra_body=GREEDY, messages=HI, stop_sequences=[stop]
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


@pytest.mark.parametrize("model", ["tiny-qwen3", "tiny-llama", "tiny-mistral", "tiny-deepseek-r1", "tiny-gpt-oss"])
def test_tool_choice_any_returns_a_valid_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    kwargs: Any = {"model": model, "max_tokens": 80, "messages": HI, "tools": [WEATHER], "tool_choice": {"type": "any"}}
    out = claude.messages.create(**kwargs)
    uses = [b for b in out.content if b.type == "tool_use"]
    assert out.stop_reason == "tool_use" and uses
    assert uses[0].id.startswith("toolu_") and uses[0].name == "get_weather"
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])
    with claude.messages.stream(**kwargs) as stream:
        events = list(stream)
        final = stream.get_final_message()
    starts = [e for e in events if e.type == "content_block_start" and e.content_block.type == "tool_use"]
    assert starts and starts[0].content_block.input == {}
    pieces = "".join(
        e.delta.partial_json for e in events if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    )
    assert json.loads(pieces) == next(b for b in final.content if b.type == "tool_use").input
    assert final.stop_reason == "tool_use"


def test_a_named_tool_choice_calls_that_tool(claude: anthropic.Anthropic) -> None:
    other: Any = {"name": "noop", "input_schema": {"type": "object", "properties": {}, "additionalProperties": False}}
    out = claude.messages.create(
        model="tiny-llama",
        max_tokens=60,
        messages=HI,
        tools=[WEATHER, other],
        tool_choice={"type": "tool", "name": "noop"},
    )
    assert [(b.type, getattr(b, "name", None)) for b in out.content] == [("tool_use", "noop")]


def test_tool_use_and_tool_result_history_is_rendered(claude: anthropic.Anthropic) -> None:
    history: Any = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "12 degrees and rain"}],
        },
    ]
    with_result = claude.messages.count_tokens(model="tiny-qwen3", messages=history, tools=[WEATHER]).input_tokens
    without = claude.messages.count_tokens(model="tiny-qwen3", messages=history[:1], tools=[WEATHER]).input_tokens
    assert with_result > without
    out = claude.messages.create(model="tiny-qwen3", max_tokens=4, messages=history, tools=[WEATHER])
    assert out.usage.input_tokens + out.usage.cache_read_input_tokens == with_result


@pytest.mark.parametrize("model", ["tiny-deepseek-r1", "tiny-qwen3"])
def test_thinking_comes_back_as_thinking_blocks_before_the_text(claude: anthropic.Anthropic, model: str) -> None:
    kwargs: Any = {"model": model, "max_tokens": 24, "messages": HI, "extra_body": GREEDY}
    kwargs["thinking"] = {"type": "enabled", "budget_tokens": 6}
    kwargs["messages"] = [{"role": "user", "content": "<think>"}] if model == "tiny-qwen3" else HI
    out = claude.messages.create(**kwargs)
    kinds = [b.type for b in out.content]
    if model == "tiny-deepseek-r1":  # its template opens the block: it always thinks first
        assert kinds == ["thinking", "text"]
    for block in out.content:
        if block.type == "thinking":
            assert block.thinking and "<think>" not in block.thinking and "</think>" not in block.thinking
    with claude.messages.stream(**kwargs) as stream:
        events = list(stream)
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    if "thinking" in kinds:
        first_text = deltas.index("text_delta") if "text_delta" in deltas else len(deltas)
        assert deltas[0] == "thinking_delta" and "signature_delta" in deltas[:first_text]


def test_thinking_disabled_switches_qwen3_thinking_off(claude: anthropic.Anthropic) -> None:
    on = claude.messages.count_tokens(model="tiny-qwen3", messages=HI, thinking={"type": "enabled", "budget_tokens": 4})
    off = claude.messages.count_tokens(model="tiny-qwen3", messages=HI, thinking={"type": "disabled"})
    assert off.input_tokens > on.input_tokens  # the template writes an empty think block when thinking is off


def test_async_client_and_the_anthropic_prefix_and_models(server: ServerProcess) -> None:
    async def main() -> None:
        client = anthropic.AsyncAnthropic(base_url=f"{server.base_url}/anthropic", api_key="x", max_retries=0)
        outs = await asyncio.gather(
            *(client.messages.create(model="tiny-gemma3", max_tokens=3, messages=HI) for _ in range(4))
        )
        assert all(o.usage.output_tokens == 3 for o in outs)
        ids = [m.id async for m in client.models.list()]
        assert "tiny-gemma3" in ids and ids == sorted(ids)
        assert (await client.models.retrieve("tiny-gemma3")).display_name == "tiny-gemma3"
        await client.close()

    asyncio.run(main())
    root = anthropic.Anthropic(base_url=server.base_url, api_key="x", max_retries=0)
    assert "tiny-llama" in [m.id for m in root.models.list()]  # /v1/models answers the Anthropic SDK in its shape


@pytest.mark.parametrize(
    ("body", "status", "kind", "word"),
    [
        ({"model": "tiny-llama", "messages": HI}, 400, "invalid_request_error", "max_tokens"),
        ({"model": "no-such-model", "max_tokens": 4, "messages": HI}, 404, "not_found_error", "no-such-model"),
        (
            {"model": "tiny-llama", "max_tokens": 4, "messages": HI, "frequency": 1},
            400,
            "invalid_request_error",
            "frequency",
        ),
        (
            {
                "model": "tiny-llama",
                "max_tokens": 4,
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "http://x"}}]}
                ],
            },
            400,
            "invalid_request_error",
            "image",
        ),
        (
            {
                "model": "tiny-llama",
                "max_tokens": 4,
                "messages": HI,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            400,
            "invalid_request_error",
            "server tool",
        ),
        (
            {
                "model": "tiny-llama",
                "max_tokens": 4,
                "messages": HI,
                "thinking": {"type": "enabled", "budget_tokens": 8},
            },
            400,
            "invalid_request_error",
            "budget_tokens",
        ),
    ],
)
def test_bad_requests_get_anthropic_error_shape(
    server: ServerProcess, body: Any, status: int, kind: str, word: str
) -> None:
    resp = httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=60)
    assert resp.status_code == status, resp.text
    err = resp.json()
    assert err["type"] == "error" and err["error"]["type"] == kind and word in err["error"]["message"]


def test_the_shared_sampling_extensions_reach_the_engine(claude: anthropic.Anthropic, server: ServerProcess) -> None:
    # min_p and repetition_penalty as every other API takes them; top_k stays Anthropic's own (0 or more).
    def run(**extra: float) -> str:
        out = claude.messages.create(model="tiny-llama", max_tokens=40, messages=HI, extra_body={**GREEDY, **extra})
        return "".join(block.text for block in out.content if block.type == "text")

    plain = run()
    assert run(repetition_penalty=1.8) != plain
    assert run(temperature=1.5, min_p=1.0) == plain  # min_p 1 keeps only the likeliest token: greedy
    for field, value in (("min_p", 2), ("repetition_penalty", 0), ("top_k", -1)):
        body = {"model": "tiny-llama", "max_tokens": 4, "messages": HI, field: value}
        resp = httpx.post(f"{server.base_url}/v1/messages", json=body, timeout=60)
        assert resp.status_code == 400 and field in resp.json()["error"]["message"], resp.text


def test_sdk_raises_its_own_exceptions(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=4, messages=HI)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.create(model="tiny-llama", max_tokens=4, messages=[])


def test_an_assistant_prefill_is_continued_not_restarted(claude: anthropic.Anthropic) -> None:
    prefill: Any = [*HI, {"role": "assistant", "content": "Hello there"}]
    fresh = claude.messages.count_tokens(model="tiny-qwen3", messages=prefill).input_tokens
    closed: Any = [*prefill, {"role": "user", "content": "x"}]
    # Continued, the prefill stays open: no end-of-turn and no new assistant header after it.
    assert fresh < claude.messages.count_tokens(model="tiny-qwen3", messages=closed).input_tokens - 4
    out = claude.messages.create(model="tiny-qwen3", max_tokens=3, messages=prefill, thinking={"type": "disabled"})
    assert out.usage.output_tokens == 3


def test_output_config_format_enforces_a_json_schema(claude: anthropic.Anthropic) -> None:
    schema = WEATHER["input_schema"]
    for model in ("tiny-llama", "tiny-deepseek-r1"):
        out = claude.messages.create(
            model=model,
            max_tokens=60,
            messages=HI,
            output_config={"format": {"type": "json_schema", "schema": schema}},
            thinking={"type": "enabled", "budget_tokens": 4},
        )
        text = next(b for b in out.content if b.type == "text").text
        jsonschema.validate(json.loads(text), schema)
        assert out.stop_reason == "end_turn"


def test_thinking_display_omitted_keeps_the_block_but_not_its_text(claude: anthropic.Anthropic) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 4, "display": "omitted"}
    out = claude.messages.create(model="tiny-deepseek-r1", max_tokens=10, messages=HI, thinking=thinking)
    assert out.content[0].type == "thinking" and out.content[0].thinking == ""
