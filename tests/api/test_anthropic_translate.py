"""Anthropic messages become the engine's chat prompt: roles, tool turns, thinking and tool choice."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlx_manager.api.anthropic.schemas import MessagesRequest
from mlx_manager.api.anthropic.translate import chat_prompt, content_blocks, stop_reason
from mlx_manager.api.errors import APIError
from mlx_manager.api.replies import CallParts, Reply

TOOL: Any = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def _req(**kwargs: Any) -> MessagesRequest:
    return MessagesRequest.model_validate({"model": "m", "max_tokens": 5, **kwargs})


def test_a_tool_round_trip_becomes_assistant_tool_calls_then_tool_messages() -> None:
    prompt = chat_prompt(
        _req(
            system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "Need a tool.", "signature": "sig"},
                        {"type": "redacted_thinking", "data": "xx"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Thanks."},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "rain"}],
                        },
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
                    ],
                },
            ],
            tools=[TOOL],
        )
    )
    system, user, assistant, result1, result2, thanks = prompt.messages
    assert system == {"role": "system", "content": "A\nB"} and user == {"role": "user", "content": "Weather?"}
    assert assistant["content"] == "Checking." and assistant["reasoning_content"] == "Need a tool."
    (call,) = assistant["tool_calls"]
    assert call["id"] == "toolu_1" and json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert result1 == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"}
    assert result2["content"] == "Error: boom"
    assert thanks == {"role": "user", "content": "Thanks."}  # after the results it answers
    assert prompt.tools == [
        {"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"]}}
    ]
    assert prompt.parse_tool_calls and prompt.force_tool is None and not prompt.continue_final


@pytest.mark.parametrize(
    ("choice", "force", "parallel", "tools"),
    [
        ({"type": "auto"}, None, True, 1),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False, 1),
        ({"type": "tool", "name": "get_weather"}, "get_weather", True, 1),
        ({"type": "none"}, None, True, 0),
    ],
)
def test_tool_choice_maps_to_the_engines_forced_call(
    choice: Any, force: str | None, parallel: bool, tools: int
) -> None:
    prompt = chat_prompt(_req(messages=[{"role": "user", "content": "x"}], tools=[TOOL], tool_choice=choice))
    assert (prompt.force_tool, prompt.parallel_tool_calls, len(prompt.tools or [])) == (force, parallel, tools)
    # A forced tool_use is the reply's first block: thinking off, no reasoning before it.
    assert prompt.allow_reasoning is (force is None)
    assert prompt.template_kwargs == ({} if force is None else {"enable_thinking": False})


@pytest.mark.parametrize("thinking", [{"type": "enabled", "budget_tokens": 2}, {"type": "adaptive"}])
@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_thinking_with_a_forcing_tool_choice_is_refused_as_anthropic_does(thinking: Any, choice: Any) -> None:
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(APIError, match=r"^Thinking may not be enabled when tool_choice forces tool use\.$"):
        chat_prompt(_req(messages=msgs, tools=[TOOL], tool_choice=choice, thinking=thinking))
    off = chat_prompt(_req(messages=msgs, tools=[TOOL], tool_choice=choice, thinking={"type": "disabled"}))
    assert not off.allow_reasoning
    auto = chat_prompt(_req(messages=msgs, tools=[TOOL], tool_choice={"type": "auto"}, thinking=thinking))
    assert auto.allow_reasoning and auto.template_kwargs == {"enable_thinking": True}


def test_thinking_switches_the_template_flag_and_absent_leaves_the_default() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert chat_prompt(_req(messages=msgs)).template_kwargs == {}
    assert chat_prompt(_req(messages=msgs, thinking={"type": "disabled"})).template_kwargs == {"enable_thinking": False}
    on = chat_prompt(_req(messages=msgs, thinking={"type": "adaptive"}))
    assert on.template_kwargs == {"enable_thinking": True}


def test_a_trailing_assistant_message_is_a_prefill() -> None:
    prompt = chat_prompt(_req(messages=[{"role": "user", "content": "x"}, {"role": "assistant", "content": "The"}]))
    assert prompt.continue_final and prompt.messages[-1] == {"role": "assistant", "content": "The"}


def test_unparseable_tool_arguments_come_back_as_text_not_lost() -> None:
    reply = Reply(content="", tool_calls=[CallParts("call_a", "f", "{bad"), CallParts("call_b", "g", '{"x": 1}')])
    blocks = content_blocks(reply)
    assert [b.type for b in blocks] == ["text", "tool_use"]
    assert "f({bad)" in blocks[0].text  # type: ignore[union-attr]
    assert blocks[1].id == "toolu_b" and blocks[1].input == {"x": 1}  # type: ignore[union-attr]


def test_stop_reasons() -> None:
    assert stop_reason("stop", None) == "end_turn"
    assert stop_reason("stop", "###") == "stop_sequence"
    assert stop_reason("length", None) == "max_tokens"
    assert stop_reason("tool_calls", None) == "tool_use"


def test_a_tool_choice_naming_an_unknown_tool_is_refused() -> None:
    with pytest.raises(APIError, match="not in tools"):
        chat_prompt(
            _req(messages=[{"role": "user", "content": "x"}], tools=[TOOL], tool_choice={"type": "tool", "name": "zz"})
        )
