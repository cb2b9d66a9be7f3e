"""Chat completions through the official openai SDK against a real server with tiny models."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.conftest import token_id

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say something."}]

# Each family's end-of-turn token: forcing it with logit_bias must end the turn with finish_reason "stop".
END_OF_TURN = {
    "tiny-llama": "<|eot_id|>",
    "tiny-qwen3": "<|im_end|>",
    "tiny-mistral": "</s>",
    "tiny-gemma3": "<end_of_turn>",
    "tiny-llama-4bit": "<|eot_id|>",
}


def test_non_streaming_chat_returns_text_usage_and_length_finish(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=0)
    choice = out.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert out.usage is not None
    assert out.usage.completion_tokens == 12
    assert out.usage.prompt_tokens > 10
    assert out.usage.total_tokens == out.usage.prompt_tokens + 12
    assert out.id.startswith("chatcmpl-")


def test_streaming_matches_non_streaming_text_and_reports_usage(client: openai.OpenAI) -> None:
    kwargs = {"model": "tiny-qwen3", "messages": MESSAGES, "max_tokens": 16, "temperature": 0}
    full = client.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    stream = client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == full.choices[0].message.content
    assert finishes == ["length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


@pytest.mark.parametrize("model", sorted(END_OF_TURN))
def test_family_end_of_turn_token_stops_generation_and_is_not_emitted(
    client: openai.OpenAI, tiny_models: dict[str, Path], model: str
) -> None:
    eot = token_id(tiny_models[model], END_OF_TURN[model])
    out = client.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=50, temperature=0, logit_bias={str(eot): 100}
    )
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].message.content == ""
    assert out.usage is not None and out.usage.completion_tokens == 1


@pytest.mark.parametrize("model", sorted(END_OF_TURN))
def test_each_family_renders_its_own_chat_template(client: openai.OpenAI, model: str) -> None:
    # The prompt token count differs per template; all must render and generate.
    out = client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=3, temperature=0)
    assert out.usage is not None and out.usage.prompt_tokens > 5
    assert out.choices[0].finish_reason in ("length", "stop")


def test_same_seed_gives_same_text_and_different_seeds_differ(client: openai.OpenAI) -> None:
    def run(seed: int) -> str:
        out = client.chat.completions.create(
            model="tiny-llama", messages=MESSAGES, max_tokens=24, temperature=1.5, seed=seed
        )
        return out.choices[0].message.content or ""

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert first != other


def test_greedy_ignores_seed(client: openai.OpenAI) -> None:
    texts = {
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=10, temperature=0, seed=s)
        .choices[0]
        .message.content
        for s in (1, 2)
    }
    assert len(texts) == 1


def test_stop_string_is_never_emitted_and_ends_with_stop(client: openai.OpenAI) -> None:
    base = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=30, temperature=0)
    text = base.choices[0].message.content or ""
    # A stop string taken from the middle of the greedy output, likely spanning a token boundary.
    stop = text[5:9]
    assert len(stop) == 4
    cut = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=30, temperature=0, stop=[stop, "zzzz-never"]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == text[: text.index(stop)]
    streamed = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=30, temperature=0, stop=stop, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text[: text.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_logit_bias_forces_a_token(client: openai.OpenAI, tiny_models: dict[str, Path]) -> None:
    target = token_id(tiny_models["tiny-llama"], "Ġthe")
    out = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=4, temperature=0, logit_bias={str(target): 100}
    )
    # mlx-lm's detokenizer drops the first token's leading space, as the models' own decoders do.
    assert (out.choices[0].message.content or "").split() == ["the"] * 4


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_completion_tokens=5, temperature=0)
    assert out.usage is not None and out.usage.completion_tokens == 5


def test_logprobs_and_top_logprobs_are_consistent(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = out.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 6
    assert "".join(t.token for t in content) == out.choices[0].message.content
    for item in content:
        assert item.logprob <= 0
        assert len(item.top_logprobs) == 3
        # Greedy: the chosen token is the most likely one.
        assert item.top_logprobs[0].logprob == pytest.approx(item.logprob, abs=1e-4)
        assert [t.logprob for t in item.top_logprobs] == sorted((t.logprob for t in item.top_logprobs), reverse=True)


def test_penalties_change_greedy_output(client: openai.OpenAI) -> None:
    def run(**kw: float) -> str:
        out = client.chat.completions.create(
            model="tiny-llama", messages=MESSAGES, max_tokens=40, temperature=0, extra_body=kw
        )
        return out.choices[0].message.content or ""

    plain = run()
    assert run(frequency_penalty=2.0) != plain
    assert run(presence_penalty=2.0) != plain
    assert run(repetition_penalty=1.8) != plain


def test_top_k_one_equals_greedy(client: openai.OpenAI) -> None:
    greedy = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=0)
    top1 = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=1.0, seed=3, extra_body={"top_k": 1}
    )
    assert top1.choices[0].message.content == greedy.choices[0].message.content


def test_tiny_top_p_and_high_min_p_equal_greedy(client: openai.OpenAI) -> None:
    greedy = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=0)
    for extra in ({"top_p": 1e-6}, {"min_p": 1.0}):
        out = client.chat.completions.create(
            model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=1.0, seed=5, extra_body=extra
        )
        assert out.choices[0].message.content == greedy.choices[0].message.content, extra


def test_n_returns_independent_choices(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=10, temperature=1.5, seed=11, n=3
    )
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert len({c.message.content for c in out.choices}) > 1
    assert out.usage is not None and out.usage.completion_tokens == 30


def test_n_streams_every_choice_with_its_index(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny-llama", messages=MESSAGES, max_tokens=5, temperature=0, n=2, stream=True
    )
    finishes: dict[int, str] = {}
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert finishes == {0: "length", 1: "length"}


def test_multi_turn_with_assistant_history(client: openai.OpenAI) -> None:
    messages = [
        *MESSAGES,
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": "Again?"},
    ]
    for model in ("tiny-llama", "tiny-qwen3", "tiny-mistral", "tiny-gemma3"):
        out = client.chat.completions.create(model=model, messages=messages, max_tokens=2)  # type: ignore[arg-type]
        assert out.usage is not None and out.usage.prompt_tokens > 12, model


def test_developer_role_and_text_parts_are_accepted(client: openai.OpenAI) -> None:
    out = client.chat.completions.create(
        model="tiny-qwen3",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]},
        ],
        max_tokens=2,
    )
    assert out.choices[0].finish_reason in ("length", "stop")
