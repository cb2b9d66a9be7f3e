"""A constrained answer after the reasoning a family writes first; call formats that name the function outside JSON."""

from __future__ import annotations

import pytest

from mlx_manager.engine.constraints import ConstraintError, FramedSpec, JsonSchemaSpec, Preamble, ToolCallSpec
from mlx_manager.engine.structured import _WRAPPERS
from tests.engine.constraints.helpers import TinyLM
from tests.engine.constraints.test_compile import PERSON, WEATHER, accepts

ANSWER = '{"name": "Bo", "age": 7}'
THINK = Preamble(open="<think>", close="</think>")


def test_an_optional_reasoning_block_may_precede_the_answer(qwen: TinyLM) -> None:
    spec = FramedSpec(JsonSchemaSpec(PERSON), THINK)
    assert accepts(qwen, spec, ANSWER)
    assert accepts(qwen, spec, f"<think>\nLet me see {{not json}}.\n</think>\n\n{ANSWER}")
    assert not accepts(qwen, spec, f"<think>x</think>oops{ANSWER}")  # after reasoning, only the answer
    assert not accepts(qwen, spec, "<think>still thinking")
    assert not accepts(qwen, spec, f"{ANSWER}<think>x</think>")


def test_a_block_the_prompt_opened_must_be_closed_before_the_answer(qwen: TinyLM) -> None:
    spec = FramedSpec(JsonSchemaSpec(PERSON), Preamble(open="", close="</think>", required=True))
    assert accepts(qwen, spec, f"hmm, a person\n</think>\n\n{ANSWER}")
    assert not accepts(qwen, spec, ANSWER)


def test_a_reasoning_budget_forces_the_closing_tag(qwen: TinyLM) -> None:
    spec = FramedSpec(JsonSchemaSpec(PERSON), Preamble(open="", close="</think>", required=True, max_tokens=3))
    matcher = qwen.factory.compile(spec).template.deep_copy()
    assert matcher.consume_tokens(qwen.encode(" a b c"))
    close = qwen.tokenizer.convert_tokens_to_ids("</think>")
    assert matcher.compute_ff_tokens()[:1] == [close]


def test_a_budget_needs_a_single_token_closing_tag(qwen: TinyLM) -> None:
    spec = FramedSpec(JsonSchemaSpec(PERSON), Preamble(open="[R]", close="[/R]", max_tokens=3))
    with pytest.raises(ConstraintError, match="single-token"):
        qwen.factory.compile(spec)
    unbounded = FramedSpec(JsonSchemaSpec(PERSON), Preamble(open="[R]", close="[/R]"))
    assert accepts(qwen, unbounded, f"[R] a, b [/R] {ANSWER}")
    lenient = FramedSpec(JsonSchemaSpec(PERSON), Preamble(open="[R]", close="[/R]", max_tokens=1, strict=False))
    assert accepts(qwen, lenient, f"[R] a, b, c, d [/R] {ANSWER}")  # the server's own bound: dropped, not a 400


def test_harmony_answers_on_the_final_channel_after_optional_analysis(gpt_oss: TinyLM) -> None:
    analysis = Preamble(open="<|channel|>analysis<|message|>", close="<|end|><|start|>assistant")
    spec = FramedSpec(JsonSchemaSpec(PERSON), analysis, prefix="<|channel|>final<|message|>")
    final = f"<|channel|>final<|message|>{ANSWER}"
    assert accepts(gpt_oss, spec, final)
    assert accepts(gpt_oss, spec, f"<|channel|>analysis<|message|>Think.<|end|><|start|>assistant{final}")
    assert not accepts(gpt_oss, spec, ANSWER)


def test_harmony_and_deepseek_calls_name_the_function_outside_json(qwen: TinyLM, gpt_oss: TinyLM) -> None:
    harmony = ToolCallSpec([WEATHER], **_WRAPPERS["harmony"])
    call = '<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Oslo"}<|call|>'
    assert accepts(gpt_oss, harmony, call)
    assert not accepts(gpt_oss, harmony, call.replace("get_weather", "get_time"))
    deepseek = ToolCallSpec([WEATHER], **_WRAPPERS["deepseek"])
    body = 'function<｜tool▁sep｜>get_weather\n```json\n{"city": "Oslo"}\n```'
    text = f"<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>{body}<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
    assert accepts(qwen, deepseek, text)  # the markers are plain text to qwen's tokenizer
    assert not accepts(qwen, deepseek, text.replace('"Oslo"', "7"))


def test_function_names_that_could_break_the_markup_are_refused(qwen: TinyLM) -> None:
    with pytest.raises(ConstraintError, match="Function name"):
        qwen.factory.compile(ToolCallSpec([WEATHER.__class__("get weather<|x|>", None)]))
