"""The same request sent by each API reaches the backend the same way: every serving translates its wire format,
then starts through the one Starter, so tools, tool choice, response formats, reasoning effort and sampling values
arrive identically whichever API carried them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlx_manager.api.anthropic.schemas import MessagesRequest
from mlx_manager.api.anthropic.serving import AnthropicServing
from mlx_manager.api.errors import APIError
from mlx_manager.api.openai.schemas import ChatCompletionRequest, CompletionRequest
from mlx_manager.api.openai.serving import Completions, OpenAIServing
from mlx_manager.api.request.normalize import EFFORTS, Effort, Limits
from mlx_manager.api.request.start import Starter
from mlx_manager.api.responses.schemas import ResponsesRequest
from mlx_manager.api.responses.serving import Caller, ResponsesServing
from mlx_manager.engine.backend import ONE, Capabilities, Run
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import ChatPrompt, Prompt, SamplingParams, TextPrompt

SCHEMA: Any = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL: Any = {"name": "get_weather", "description": "Weather", "parameters": SCHEMA}


class Recorder:
    """A backend that keeps what it was asked to generate."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Prompt, SamplingParams]] = []

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        self.calls.append((model_id, prompt, params))
        return Generation(prompt_tokens=0, n=run.n, model=model_id)  # queued nowhere: nothing runs it

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int:
        return 0

    async def capabilities(self, model_id: str) -> Capabilities:
        return Capabilities()


def _through_each_api(
    openai: dict[str, Any], anthropic: dict[str, Any], responses: dict[str, Any]
) -> list[tuple[ChatPrompt, SamplingParams]]:
    backend = Recorder()
    starter, limits = Starter(backend), Limits()

    async def main() -> None:
        await OpenAIServing(starter, limits).start_chat(ChatCompletionRequest.model_validate({"model": "m", **openai}))
        await AnthropicServing(starter, limits).start(MessagesRequest.model_validate({"model": "m", **anthropic}))
        store: Any = None  # only a previous_response_id reads it
        responses_req = ResponsesRequest.model_validate({"model": "m", **responses})
        await ResponsesServing(starter, limits, store).start(responses_req, Caller())

    asyncio.run(main())
    out = []
    for model, prompt, params in backend.calls:
        assert model == "m" and isinstance(prompt, ChatPrompt)
        out.append((prompt, params))
    return out


def test_a_forced_tool_call_arrives_the_same_from_every_api() -> None:
    calls = _through_each_api(
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Oslo?"}],
            "tools": [{"type": "function", "function": TOOL}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
            "max_tokens": 20,
            "temperature": 0.5,
        },
        {
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "Oslo?"}],
            "tools": [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "max_tokens": 20,
            "temperature": 0.5,
        },
        {
            "instructions": "Be brief.",
            "input": "Oslo?",
            "tools": [{"type": "function", **TOOL}],
            "tool_choice": {"type": "function", "name": "get_weather"},
            "parallel_tool_calls": False,
            "max_output_tokens": 20,
            "temperature": 0.5,
        },
    )
    (openai_prompt, openai_params), *others = calls
    for prompt, params in others:
        assert prompt.messages == openai_prompt.messages
        assert prompt.tools == openai_prompt.tools
        assert (prompt.force_tool, prompt.parallel_tool_calls) == ("get_weather", False)
        assert (params.max_tokens, params.temperature, params.response_format) == (20, 0.5, None)
    assert openai_prompt.force_tool == "get_weather" and openai_params.max_tokens == 20


def test_a_json_schema_reply_arrives_the_same_from_every_api() -> None:
    calls = _through_each_api(
        {
            "messages": [{"role": "user", "content": "Oslo?"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}},
        },
        {
            "messages": [{"role": "user", "content": "Oslo?"}],
            "max_tokens": 9,
            "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
        },
        {"input": "Oslo?", "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}}},
    )
    assert [params.response_format for _, params in calls] == [{"type": "json_schema", "schema": SCHEMA}] * 3


@pytest.mark.parametrize("effort", ["low", "medium", "high", "xhigh"])
def test_a_reasoning_effort_means_the_same_in_every_api_that_takes_it(effort: Effort) -> None:
    calls = _through_each_api(
        {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": effort},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 9, "output_config": {"effort": effort}},
        {"input": "x", "reasoning": {"effort": effort}},
    )
    level, _thinking = EFFORTS[effort]
    assert [prompt.template_kwargs for prompt, _ in calls] == [{"reasoning_effort": level}] * 3


def test_tool_choice_without_tools_is_the_same_400_in_every_api() -> None:
    backend = Recorder()
    starter, limits = Starter(backend), Limits()
    chat = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}
    )
    message = MessagesRequest.model_validate(
        {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "any"}}
    )
    response = ResponsesRequest.model_validate({"model": "m", "input": "x", "tool_choice": "required"})
    store: Any = None
    starts = [
        lambda: OpenAIServing(starter, limits).start_chat(chat),
        lambda: AnthropicServing(starter, limits).start(message),
        lambda: ResponsesServing(starter, limits, store).start(response, Caller()),
    ]
    for start in starts:
        with pytest.raises(APIError) as err:
            asyncio.run(start())
        assert (err.value.message, err.value.param) == ("tool_choice requires tools.", "tool_choice")
    assert backend.calls == []


def test_a_text_completion_starts_through_the_same_starter_as_chat() -> None:
    """Text completions are prompt-based (no chat template) but take the chat path after translate: one start per
    prompt through the Starter, with the sampling values normalised the same way."""
    backend = Recorder()
    starter, limits = Starter(backend), Limits()
    sampling = {"max_tokens": 7, "temperature": 0.3, "top_p": 0.9, "top_k": 5, "seed": 1, "stop": ["\n"], "n": 2}
    messages = [{"role": "user", "content": "a"}]
    chat = ChatCompletionRequest.model_validate({"model": "m", "messages": messages, **sampling})
    text = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"], **sampling})

    async def main() -> Completions:
        await OpenAIServing(starter, limits).start_chat(chat)
        return await OpenAIServing(starter, limits).start_completion(text)

    run = asyncio.run(main())
    (_, _, chat_params), *completions = backend.calls
    assert [prompt for _, prompt, _ in completions] == [TextPrompt(text="a"), TextPrompt(text="b")]
    for _, _, params in completions:
        assert (params.max_tokens, params.temperature, params.top_p, params.top_k, params.seed, params.stop) == (
            chat_params.max_tokens, chat_params.temperature, chat_params.top_p, chat_params.top_k, chat_params.seed,
            chat_params.stop,
        )  # fmt: skip
    assert len(run.gens) == 2
