"""Compiling specs, error reporting, caching, and the processor's mask, without running a model."""

from __future__ import annotations

import json
import re
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from tokenizers import Tokenizer

from mlx_manager.engine.constraints import (
    ConstraintError,
    ConstraintFactory,
    JsonObjectSpec,
    JsonSchemaSpec,
    LarkSpec,
    ToolCallSpec,
    ToolFunction,
)
from mlx_manager.engine.constraints.specs import lark_literal
from mlx_manager.engine.errors import InvalidRequestError
from tests.engine.constraints.helpers import TinyLM, hermes

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = ToolFunction(
    "get_weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
)
NOOP = ToolFunction("noop", {"type": "object", "properties": {}, "additionalProperties": False})


def accepts(lm: TinyLM, spec: Any, text: str, *, special_prefix: list[int] | None = None) -> bool:
    """Whether the grammar takes `text` (tokenized as the model would) as a complete output."""
    matcher = lm.factory.compile(spec).template.deep_copy()
    ids = (special_prefix or []) + lm.encode(text)
    return matcher.consume_tokens(ids) and matcher.is_accepting()


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, ["uniqueItems"]),
        ({"not": {"type": "string"}}, ["not"]),
        ({"type": "string", "if": {"minLength": 2}, "then": {"maxLength": 3}}, ["if", "then"]),
        (
            {"type": "object", "properties": {"a": {"type": "object", "dependentRequired": {"x": ["y"]}}}},
            ["dependentRequired"],
        ),
        ({"$defs": {"t": {"type": "array", "contains": {"type": "integer"}}}, "$ref": "#/$defs/t"}, ["contains"]),
        ({"type": "string", "format": "color"}, ["format:color"]),
    ],
)
def test_unsupported_schema_features_raise_naming_them(qwen: TinyLM, schema: dict[str, Any], named: list[str]) -> None:
    with pytest.raises(ConstraintError) as info:
        qwen.factory.compile(schema)
    err = info.value
    assert isinstance(err, ValueError)
    assert isinstance(err, InvalidRequestError)  # the API layers answer 400
    assert err.param == "response_format"
    assert list(err.unsupported) == named
    for name in named:
        assert name.removeprefix("format:") in str(err)


def test_invalid_schemas_and_tool_specs_raise_constraint_errors(qwen: TinyLM) -> None:
    with pytest.raises(ConstraintError, match=re.escape("http://example.com/x")):
        qwen.factory.compile({"type": "object", "properties": {"a": {"$ref": "http://example.com/x"}}})
    with pytest.raises(ConstraintError, match="not valid JSON"):
        qwen.factory.compile({"type": "object", "default": object()})
    with pytest.raises(ConstraintError, match="uniqueItems") as info:
        bad = ToolFunction("f", {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}})
        qwen.factory.compile(ToolCallSpec([bad]))
    assert info.value.param == "tools"
    for spec in (ToolCallSpec([]), ToolCallSpec([NOOP, NOOP]), ToolCallSpec([NOOP], parallel=True, max_calls=0)):
        with pytest.raises(ConstraintError):
            qwen.factory.compile(spec)
    with pytest.raises(ConstraintError):
        qwen.factory.compile(LarkSpec("start: undefined_rule"))


def test_compiled_grammars_are_cached_by_spec_with_lru_eviction(qwen: TinyLM) -> None:
    factory = ConstraintFactory(qwen.tokenizer, qwen.vocab_size, qwen.stop_ids, cache_size=2)
    first = factory.compile(PERSON)
    assert factory.compile(json.loads(json.dumps(PERSON))) is first  # equal content, new dict
    assert factory.compile(JsonSchemaSpec(PERSON)) is first
    props: dict[str, Any] = PERSON["properties"]  # type: ignore[assignment]
    reordered = {**PERSON, "properties": dict(reversed(props.items()))}
    assert factory.compile(reordered) is not first  # property order is part of the grammar
    factory.compile(JsonObjectSpec())
    assert factory.cache_info() == (2, 2)
    assert factory.compile(PERSON) is not first  # evicted, compiled again


def test_json_object_and_schema_grammars_accept_valid_and_reject_invalid_text(qwen: TinyLM) -> None:
    assert accepts(qwen, JsonObjectSpec(), '{"a": [1, {"b": null}], "c": "x"}')
    assert accepts(qwen, JsonObjectSpec(), '{\n  "a": true\n}')
    assert not accepts(qwen, JsonObjectSpec(), "[1, 2]")
    assert not accepts(qwen, JsonObjectSpec(), '{"a": 1')
    assert accepts(qwen, PERSON, '{"name": "Bo", "age": 7}')
    assert not accepts(qwen, PERSON, '{"name": "Bo", "age": -7}')
    assert not accepts(qwen, PERSON, '{"name": "Bo"}')
    assert not accepts(qwen, PERSON, '{"name": "Bo", "age": 7, "x": 1}')
    assert not accepts(qwen, PERSON, '{"name": "Bo",' + " " * 40 + '"age": 7}')  # whitespace is bounded


def test_tool_call_grammar_wraps_calls_and_checks_names_and_arguments(qwen: TinyLM) -> None:
    one = hermes([WEATHER, NOOP])
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    assert accepts(qwen, one, f"<tool_call>\n{call}\n</tool_call>")
    assert accepts(qwen, one, '<tool_call>\n{"name": "noop", "arguments": {}}\n</tool_call>')
    assert not accepts(qwen, one, call)  # no wrapper
    assert not accepts(qwen, one, '<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>')
    assert not accepts(qwen, one, '<tool_call>\n{"name": "get_weather", "arguments": {}}\n</tool_call>')
    assert not accepts(qwen, one, '<tool_call>\n{"name": "noop", "arguments": {"city": "x"}}\n</tool_call>')
    two = f"<tool_call>\n{call}\n</tool_call>\n<tool_call>\n{call}\n</tool_call>"
    assert not accepts(qwen, one, two)
    assert accepts(qwen, hermes([WEATHER, NOOP], parallel=True), two)
    assert not accepts(qwen, hermes([WEATHER], parallel=True, max_calls=1), two)
    mistral = ToolCallSpec([WEATHER], begin="[", end="]", separator=", ", parallel=True)
    assert accepts(qwen, mistral, f"[{call}, {call}]")
    llama31 = ToolCallSpec([WEATHER], arguments_key="parameters")
    assert accepts(qwen, llama31, '{"name": "get_weather", "parameters": {"city": "Oslo"}}')


def test_special_tokens_in_tool_call_literals_are_matched_as_tokens(qwen: TinyLM) -> None:
    tool_call = qwen.tokenizer.convert_tokens_to_ids("<tool_call>")
    assert qwen.factory.special_tokens["<tool_call>"] == tool_call
    assert lark_literal("<tool_call>\nx", {"<tool_call>": tool_call}) == f'<[{tool_call}]> "\\nx"'
    matcher = qwen.factory.compile(hermes([NOOP])).template.deep_copy()
    assert matcher.compute_ff_tokens()[0] == tool_call  # the model writes the one token, not '<', 'tool', ...


def test_factory_accepts_a_plain_tokenizers_tokenizer(qwen: TinyLM) -> None:
    raw = Tokenizer.from_file(str(qwen.path / "tokenizer.json"))
    factory = ConstraintFactory(raw, qwen.vocab_size, qwen.stop_ids)
    assert factory.ll_tokenizer.vocab_size == qwen.factory.ll_tokenizer.vocab_size
    with pytest.raises(ConstraintError, match="fast"):
        ConstraintFactory(object(), qwen.vocab_size, qwen.stop_ids)


def test_mask_is_padded_to_the_model_vocab_and_eos_is_forced_at_the_end(qwen: TinyLM) -> None:
    tok_vocab = qwen.factory.ll_tokenizer.vocab_size
    assert tok_vocab < qwen.vocab_size == 1024
    proc = qwen.factory.processor({"enum": ["yes", "no"]})
    prompt = qwen.encode("Answer:")
    logits = mx.zeros((1, qwen.vocab_size))
    out = np.array(proc(mx.array(prompt), logits))
    assert out.shape == (1, qwen.vocab_size)
    assert np.isinf(out[0, tok_vocab:]).all()  # ids past the tokenizer are never allowed
    assert not proc.is_accepting() and proc.generated_tokens == 0
    answer = qwen.encode('"yes"')
    for i in range(len(answer)):
        out = np.array(proc(mx.array(prompt + answer[: i + 1]), logits))
    assert proc.is_accepting() and proc.is_finished() and proc.error is None
    allowed = set(np.flatnonzero(np.isfinite(out[0])).tolist())
    assert allowed == set(qwen.stop_ids)
    # The step that returns the stop token calls the processor with it: that is not an error.
    proc(mx.array(prompt + answer + [min(qwen.stop_ids)]), logits)
    assert proc.error is None


def test_a_sequence_can_narrow_the_stop_tokens(qwen: TinyLM) -> None:
    assert len(qwen.stop_ids) > 1
    only = min(qwen.stop_ids)
    proc = qwen.factory.processor({"type": "integer"}, eos_token_ids=[only])
    prompt = qwen.encode("N:")
    logits = mx.zeros((1, qwen.vocab_size))
    proc(mx.array(prompt), logits)
    out = np.array(proc(mx.array([*prompt, *qwen.encode("7")]), logits))
    assert proc.is_accepting() and not proc.is_finished()  # more digits could follow
    finite = set(np.flatnonzero(np.isfinite(out[0])).tolist())
    assert only in finite and not (qwen.stop_ids - {only}) & finite


def test_a_rejected_token_stops_constraining_without_raising(qwen: TinyLM, caplog: pytest.LogCaptureFixture) -> None:
    proc = qwen.factory.processor(PERSON)
    prompt = qwen.encode("Person:")
    logits = mx.random.normal((1, qwen.vocab_size))
    proc(mx.array(prompt), logits)
    out = proc(mx.array([*prompt, *qwen.encode("hello")[:1]]), logits)  # not a '{'
    assert proc.error is not None and "rejected" in proc.error
    assert "constrained decoding stopped" in caplog.text
    assert np.array_equal(np.array(out), np.array(logits))
    assert not proc.is_accepting() and not proc.is_finished()
    assert np.array_equal(np.array(proc(mx.array([*prompt, 1, 2]), logits)), np.array(logits))
