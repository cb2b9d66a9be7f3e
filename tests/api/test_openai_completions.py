"""Legacy text completions through the openai SDK."""

from __future__ import annotations

from pathlib import Path

import openai

from mlx_manager.testing.server import ServerProcess
from tests.api.accounts import eventually
from tests.conftest import token_id


def test_text_completion_counts_tokens_and_defaults_to_16(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-llama", prompt="Once upon a time", temperature=0)
    assert out.object == "text_completion"
    assert out.usage is not None and out.usage.completion_tokens == 16
    assert out.choices[0].finish_reason == "length"
    assert out.choices[0].text


def test_streamed_completion_equals_non_streamed(client: openai.OpenAI) -> None:
    kwargs = {"model": "tiny-mistral", "prompt": "The weather today", "max_tokens": 12, "temperature": 0}
    full = client.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12


def test_echo_prefixes_the_prompt(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-llama", prompt="Hello", max_tokens=3, temperature=0, echo=True)
    assert out.choices[0].text.startswith("Hello")


def test_list_of_prompts_gives_one_choice_each(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-llama", prompt=["one", "two"], max_tokens=3, temperature=0)
    assert [c.index for c in out.choices] == [0, 1]
    assert out.usage is not None and out.usage.completion_tokens == 6


def test_token_id_prompt_equals_text_prompt(client: openai.OpenAI) -> None:
    text = client.completions.create(model="tiny-qwen3", prompt="abc def", max_tokens=5, temperature=0)
    ids = client.completions.create(model="tiny-qwen3", prompt=list(range(300, 310)), max_tokens=5, temperature=0)
    assert ids.usage is not None and ids.usage.prompt_tokens == 10
    assert text.choices[0].text


def test_logprobs_list_each_token(client: openai.OpenAI) -> None:
    out = client.completions.create(model="tiny-llama", prompt="Hi", max_tokens=4, temperature=0, logprobs=2)
    lp = out.choices[0].logprobs
    assert lp is not None and lp.tokens is not None and len(lp.tokens) == 4
    assert "".join(lp.tokens) == out.choices[0].text
    assert lp.top_logprobs is not None and all(len(t) == 2 for t in lp.top_logprobs if t)


def test_streamed_logprob_offsets_keep_counting(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(model="tiny-llama", prompt="Hi", max_tokens=6, temperature=0, logprobs=1, stream=True)
    )
    offsets = [o for c in chunks for o in (c.choices[0].logprobs.text_offset or [])]  # type: ignore[union-attr]
    tokens = [t for c in chunks for t in (c.choices[0].logprobs.tokens or [])]  # type: ignore[union-attr]
    assert len(offsets) == 6
    expected = [sum(len(t) for t in tokens[:i]) for i in range(6)]
    assert offsets == expected


def test_ignore_eos_generates_past_the_end_of_turn_token(client: openai.OpenAI, tiny_models: dict[str, Path]) -> None:
    eot = token_id(tiny_models["tiny-llama"], "<|eot_id|>")
    stopped = client.completions.create(
        model="tiny-llama", prompt="Hi", max_tokens=5, temperature=0, logit_bias={str(eot): 100}
    )
    assert stopped.choices[0].finish_reason == "stop"
    kept = client.completions.create(
        model="tiny-llama",
        prompt="Hi",
        max_tokens=5,
        temperature=0,
        logit_bias={str(eot): 100},
        extra_body={"ignore_eos": True},
    )
    assert kept.choices[0].finish_reason == "length"
    assert kept.usage is not None and kept.usage.completion_tokens == 5


def test_a_completion_of_several_prompts_is_logged_with_all_their_tokens(
    client: openai.OpenAI, server: ServerProcess
) -> None:
    """Text completions answer through the same path as the chat APIs (api/request/answer), so the access line
    and the audit log count every prompt's tokens, streamed or not."""
    for stream in (False, True):
        raw = client.completions.with_raw_response.create(
            model="tiny-llama", prompt=["one", "two"], max_tokens=3, temperature=0, stream=stream
        )
        if stream:
            list(raw.parse())
        mark = f"id={raw.headers['x-request-id']}"
        line = eventually(lambda mark=mark: [ln for ln in server.log().splitlines() if mark in ln])[0]
        prompt_tokens, completion_tokens = line.split("tokens=")[1].split()[0].split("/")
        assert int(prompt_tokens) > 0 and int(completion_tokens) == 6
