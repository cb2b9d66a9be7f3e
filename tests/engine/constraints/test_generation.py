"""Real constrained generation with random-weight tiny models inside mlx-lm's BatchGenerator.

The models are random, so every valid output here is the grammar's doing. Strings and numbers in the
schemas are bounded so a random model finishes; where the grammar is unbounded (any JSON object, any
number of calls) a bias towards closing tokens, applied before the constraint, lets it end.
"""

from __future__ import annotations

import json
import re
from typing import Any

import mlx.core as mx
from mlx_lm.sample_utils import make_sampler

from mlx_manager.engine.constraints import JsonObjectSpec, ToolFunction
from tests.engine.constraints.helpers import (
    Processor,
    Run,
    TinyLM,
    bias,
    generate,
    hermes,
    token_ids_with_text,
    validate,
)

PET = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "kind": {"enum": ["cat", "dog", "fish"]},
    },
    "required": ["name", "age", "kind"],
    "additionalProperties": False,
}
POINT = {
    "type": "object",
    "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}, "ok": {"type": "boolean"}},
    "required": ["x", "ok"],
    "additionalProperties": False,
}
TAGS = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 1, "maxItems": 3}},
    "required": ["tags"],
    "additionalProperties": False,
}
WEATHER = ToolFunction(
    "get_weather",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 8}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
NOOP = ToolFunction("noop", {"type": "object", "properties": {}, "additionalProperties": False})
TOOLS = {f.name: f for f in (WEATHER, NOOP)}


def sampled(seed: int) -> Any:
    mx.random.seed(seed)
    return make_sampler(temp=1.0)


def closing_bias(lm: TinyLM) -> Processor:
    return bias(token_ids_with_text(lm, {'"', "}", '"}', "]"}), 8.0)


def text_of(lm: TinyLM, run: Run) -> str:
    """The generated text without its final stop token; asserts the run ended on one, right after the grammar."""
    assert run.finish == "stop", run
    assert run.tokens[-1] in lm.stop_ids
    assert run.finished_at == len(run.tokens) - 2  # is_finished() was true on the token before the stop
    return lm.decode(run.tokens[:-1])


def check_tool_calls(text: str, max_calls: int = 1) -> list[dict[str, Any]]:
    bodies = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text, flags=re.DOTALL)
    assert "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies) == text, text
    assert 1 <= len(bodies) <= max_calls
    calls = []
    for body in bodies:
        call = json.loads(body)
        assert list(call) == ["name", "arguments"]
        assert call["name"] in TOOLS
        validate(call["arguments"], dict(TOOLS[call["name"]].parameters or {}))
        calls.append(call)
    return calls


def test_json_schema_output_validates_greedy_and_sampled(qwen: TinyLM) -> None:
    procs = [[qwen.factory.processor(PET)] for _ in range(3)]
    runs = generate(qwen, ["A pet as JSON:"] * 3, procs, samplers=[None, sampled(1), sampled(2)])
    for run in runs:
        validate(json.loads(text_of(qwen, run)), PET)


def test_json_object_request_yields_a_json_object(qwen: TinyLM) -> None:
    procs: list[list[Processor]] = [[closing_bias(qwen), qwen.factory.processor(JsonObjectSpec())] for _ in range(2)]
    runs = generate(qwen, ["Some JSON:", "Another one:"], procs, samplers=[None, sampled(3)])
    for run in runs:
        assert isinstance(json.loads(text_of(qwen, run)), dict)


def test_forced_tool_call_is_wrapped_and_valid(qwen: TinyLM) -> None:
    spec = hermes([WEATHER, NOOP])
    procs = [[qwen.factory.processor(spec)] for _ in range(3)]
    runs = generate(qwen, ["Call a tool."] * 3, procs, samplers=[None, sampled(4), sampled(5)])
    tool_call_token = qwen.factory.special_tokens["<tool_call>"]
    for run in runs:
        assert len(check_tool_calls(text_of(qwen, run))) == 1
        assert run.tokens[0] == tool_call_token  # the added token itself, as the model was trained


def test_parallel_tool_calls_stay_within_max_calls(qwen: TinyLM) -> None:
    spec = hermes([WEATHER, NOOP], parallel=True, max_calls=3)
    procs = [[qwen.factory.processor(spec)] for _ in range(2)]
    runs = generate(qwen, ["Call tools."] * 2, procs, samplers=[None, sampled(6)])
    for run in runs:
        check_tool_calls(text_of(qwen, run), max_calls=3)


def test_eight_mixed_sequences_in_one_batch(qwen: TinyLM) -> None:
    """Three schemas, json_object, a tool call and three free sequences share one batch; the free ones
    produce exactly what they produce alone."""
    f = qwen.factory
    prompts = [f"Request {i}: " + "tell me more " * (i % 3) for i in range(8)]
    procs: list[list[Processor]] = [
        [f.processor(PET)],
        [f.processor(POINT)],
        [f.processor(TAGS)],
        [closing_bias(qwen), f.processor(JsonObjectSpec())],
        [f.processor(hermes([WEATHER, NOOP]))],
        [],
        [],
        [],
    ]
    samplers = [None, sampled(7), None, None, sampled(8), None, None, sampled(9)]
    runs = generate(qwen, prompts, procs, samplers=samplers, max_tokens=160)
    validate(json.loads(text_of(qwen, runs[0])), PET)
    validate(json.loads(text_of(qwen, runs[1])), POINT)
    validate(json.loads(text_of(qwen, runs[2])), TAGS)
    assert isinstance(json.loads(text_of(qwen, runs[3])), dict)
    check_tool_calls(text_of(qwen, runs[4]))
    alone = generate(qwen, prompts[5:7], [[], []], max_tokens=160)
    assert [r.tokens for r in runs[5:7]] == [r.tokens for r in alone]
    assert runs[7].finish is not None


def test_padded_vocab_ids_are_never_sampled(qwen: TinyLM) -> None:
    tok_vocab = qwen.factory.ll_tokenizer.vocab_size
    push_padding = bias(range(tok_vocab, qwen.vocab_size), 1e4)  # the model would pick a padded id every time
    runs = generate(qwen, ["Pet:"], [[push_padding, qwen.factory.processor(POINT)]])
    validate(json.loads(text_of(qwen, runs[0])), POINT)
    assert max(runs[0].tokens) < tok_vocab


def test_a_failing_grammar_does_not_disturb_the_batch(llama: TinyLM) -> None:
    """A processor after the constraint forces a token the grammar forbids: that sequence goes on
    unconstrained, the others in the batch are unaffected."""
    bad_token = llama.encode("hello")[0]

    def saboteur(tokens: mx.array, logits: mx.array) -> mx.array:
        return mx.where(mx.arange(logits.shape[-1]) == bad_token, 1e9, logits)

    broken = llama.factory.processor(PET)
    good = llama.factory.processor(PET)
    runs = generate(llama, ["One:", "Two:"], [[broken, saboteur], [good]], max_tokens=40)
    assert broken.error is not None and "rejected" in broken.error
    assert good.error is None
    validate(json.loads(text_of(llama, runs[1])), PET)
    assert runs[0].finish == "length"
