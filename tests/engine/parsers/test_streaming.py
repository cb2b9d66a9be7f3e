"""Streaming behaviour: what is released when, partial markers, unterminated calls, reasoning composition."""

from __future__ import annotations

import pytest

from mlx_manager.engine.parsers import (
    FORMATS,
    ReasoningDelta,
    TextDelta,
    ThinkParser,
    ToolCallArgsDelta,
    ToolCallStart,
    make_parser,
)
from mlx_manager.engine.parsers.hermes import HermesParser
from mlx_manager.engine.parsers.reasoning import Pipeline
from tests.engine.parsers.fixtures import DS_CALL, DS_CALLS, DS_SEP
from tests.engine.parsers.harness import CALL_ID, counter_ids, feed_all, fold, run

SENTENCE = "Compare a<b, list[0] and {k: v}; x = y [ok] {done} <end>."


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_text_with_brackets_mid_sentence_passes_through(fmt: str) -> None:
    for pieces in ([SENTENCE], list(SENTENCE)):
        assert run(fmt, pieces).content == SENTENCE


@pytest.mark.parametrize("fmt", FORMATS)
def test_plain_text_streams_as_it_comes(fmt: str) -> None:
    parser = make_parser(fmt, reasoning=None, reasoning_started=False, tools=True)
    assert parser.feed("Hello") == [TextDelta("Hello")]
    assert parser.feed(" world") == [TextDelta(" world")]


@pytest.mark.parametrize(
    ("fmt", "partial"),
    [
        ("hermes", "<tool_ca"),
        ("glm4", "<tool_call"),
        ("mistral", "[TOOL_CA"),
        ("phi4", "<|tool_c"),
        ("phi4", "functools"),
        ("deepseek", "<｜tool▁calls"),
        ("gemma", "```tool_co"),
        ("llama3_json", "<|python_t"),
        ("harmony", "<|chan"),
    ],
)
def test_partial_marker_at_the_end_is_held_then_released_on_finish(fmt: str, partial: str) -> None:
    parser = make_parser(fmt, reasoning=None, reasoning_started=False, tools=True)
    assert fold(parser.feed("Hi " + partial)).content == "Hi "
    assert fold(parser.finish()).content == partial


@pytest.mark.parametrize("fmt", ["llama3_json", "gemma"])
def test_reply_kind_is_decided_on_the_first_non_whitespace_character(fmt: str) -> None:
    parser = make_parser(fmt, reasoning=None, reasoning_started=False, tools=True)
    assert parser.feed("\n ") == []
    assert parser.feed("Hi {") == [TextDelta("\n Hi {")]
    parser = make_parser(fmt, reasoning=None, reasoning_started=False, tools=True)
    assert parser.feed(' {"name": "f", ') == []


def test_partial_marker_is_released_as_soon_as_it_cannot_be_a_marker() -> None:
    parser = HermesParser()
    assert parser.feed("a <tool") == [TextDelta("a ")]
    assert parser.feed("box> b") == [TextDelta("<toolbox> b")]


def test_arguments_stream_before_the_call_ends() -> None:
    parser = HermesParser(id_factory=counter_ids())
    events = parser.feed('<tool_call>\n{"name": "write", "arguments": {"text": "Once upon')
    assert events[0] == ToolCallStart(0, "call_" + "0" * 24, "write")
    assert events[1:] == [ToolCallArgsDelta(0, '{"text": "Once upon')]
    assert parser.feed(' a time"}}\n</tool_call>') == [ToolCallArgsDelta(0, ' a time"}')]
    assert parser.finish() == []


def test_default_call_ids_are_random_hex() -> None:
    events = feed_all(HermesParser(), ['<tool_call>{"name": "a", "arguments": {}}</tool_call>'] * 2)
    ids = [e.id for e in events if isinstance(e, ToolCallStart)]
    assert len(ids) == 2 and ids[0] != ids[1]
    assert all(CALL_ID.fullmatch(i) for i in ids)


def test_think_block_spanning_pieces() -> None:
    parser = ThinkParser()
    events = feed_all(parser, ["<th", "ink>\nrea", "son</th", "ink>\n\nans", "wer"])
    assert fold(events).reasoning == "reason"
    assert fold(events).content == "answer"


def test_reasoning_started_by_the_prompt() -> None:
    result = run("hermes", ["I think", "...</think>", "Yes."], think="think", started=True)
    assert (result.reasoning, result.content) == ("I think...", "Yes.")


def test_reasoning_streams_as_it_comes() -> None:
    parser = ThinkParser(started=True)
    assert parser.feed("step one ") == [ReasoningDelta("step one")]
    assert parser.feed("two") == [ReasoningDelta(" two")]


def test_unclosed_reasoning_ends_as_reasoning() -> None:
    result = run("hermes", ["<think>cut off mid-thou"], think="think")
    assert (result.reasoning, result.content) == ("cut off mid-thou", "")


def test_tool_call_inside_reasoning_stays_reasoning() -> None:
    text = (
        '<think>maybe <tool_call>{"name": "f", "arguments": {}}</tool_call></think><tool_call>{"name": "g"}</tool_call>'
    )
    result = run("hermes", list(text), think="think")
    assert result.reasoning == 'maybe <tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert result.calls == [("g", {})]


def test_pipeline_without_tool_parser_passes_text() -> None:
    result = fold(feed_all(Pipeline(ThinkParser(), None), ["<think>a</think>b <tool_call>"]))
    assert (result.reasoning, result.content) == ("a", "b <tool_call>")


def test_tools_disabled_leaves_tool_markup_as_text() -> None:
    parser = make_parser("hermes", reasoning=None, reasoning_started=False, tools=False)
    text = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'
    assert fold(feed_all(parser, [text])).content == text


def test_unknown_format_or_reasoning_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        make_parser("nope", reasoning=None, reasoning_started=False, tools=True)
    with pytest.raises(ValueError, match="unknown reasoning"):
        make_parser("hermes", reasoning="nope", reasoning_started=False, tools=True)


# --- unterminated and malformed calls ---


def test_unterminated_call_before_its_name_becomes_text() -> None:
    text = 'Sure. <tool_call>\n{"name": "get_weather", "argu'
    for pieces in ([text], list(text)):
        result = run("hermes", pieces)
        assert (result.content, result.calls) == (text, [])


def test_unterminated_call_with_complete_json_is_a_call() -> None:
    result = run("hermes", ['<tool_call>\n{"name": "f", "arguments": {"a": 1}}'])
    assert (result.content, result.calls) == ("", [("f", {"a": 1})])


@pytest.mark.parametrize(
    ("cut", "args"),
    [
        ('{"a": "hel', {"a": "hel"}),
        ('{"a": "x\\', {"a": "x"}),
        ('{"a": "\\u00', {"a": ""}),
        ('{"a": 12', {}),
        ('{"a": [1, 2', {"a": [1]}),  # a number may be cut short too
        ('{"a": {"b": true}, "c', {"a": {"b": True}}),
        ('{"a": 1,', {"a": 1}),
    ],
)
def test_call_cut_off_mid_arguments_is_closed_best_effort(cut: str, args: dict[str, object]) -> None:
    text = '<tool_call>{"name": "f", "arguments": ' + cut
    for pieces in ([text], list(text)):
        assert run("hermes", pieces).calls == [("f", args)]


def test_malformed_body_is_text() -> None:
    text = "<tool_call>not json</tool_call> after"
    assert run("hermes", list(text)).content == text


def test_malformed_arguments_after_the_call_began_are_cut_at_the_error() -> None:
    result = run("hermes", ['<tool_call>{"name": "f", "arguments": {"a": 1 "b": 2}}</tool_call>Done'])
    assert (result.content, result.calls) == ("Done", [("f", {"a": 1})])


def test_python_dict_style_call_is_converted_to_json() -> None:
    text = "<tool_call>{'name': 'f', 'arguments': {'q': 'it\\'s \"x\"', 'n': None, 'ok': True, 'l': [1, 2,],}}"
    assert run("hermes", list(text + "</tool_call>")).calls == [
        ("f", {"q": 'it\'s "x"', "n": None, "ok": True, "l": [1, 2]})
    ]


def test_arguments_given_as_a_json_string_are_decoded() -> None:
    text = '<tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>'
    assert run("hermes", [text]).calls == [("f", {"a": 1})]


def test_openai_shaped_call_object_is_accepted() -> None:
    text = '[TOOL_CALLS][{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]'
    assert run("mistral", list(text)).calls == [("f", {"a": 1})]


def test_glm4_call_cut_off_mid_value_is_closed() -> None:
    text = "<tool_call>write\n<arg_key>path</arg_key>\n<arg_value>a.txt</arg_value>\n"
    text += "<arg_key>body</arg_key><arg_value>hello wor"
    assert run("glm4", list(text)).calls == [("write", {"path": "a.txt", "body": "hello wor"})]


def test_glm4_unterminated_name_becomes_text() -> None:
    assert run("glm4", ["Ok <tool_call>get_wea"]).content == "Ok <tool_call>get_wea"


def test_deepseek_call_cut_before_its_arguments_becomes_text() -> None:
    text = f"Hi{DS_CALLS}{DS_CALL}function{DS_SEP}get_wea"
    assert run("deepseek", list(text)).content == text


def test_gemma_unterminated_tool_code_with_complete_call_is_a_call() -> None:
    assert run("gemma", list('```tool_code\nf(a=1, b="x")\n')).calls == [("f", {"a": 1, "b": "x"})]


def test_gemma_positional_arguments_are_not_a_call() -> None:
    text = '```tool_code\nget_weather("Paris")\n```'
    assert run("gemma", [text]).content == text


def test_llama_reply_starting_with_whitespace_then_text_keeps_it() -> None:
    assert run("llama3_json", list("\n  Hello {x}")).content == "\n  Hello {x}"


def test_mistral_v3_junk_after_marker_is_text() -> None:
    assert run("mistral", ["[TOOL_CALLS][1, 2]"]).content == "[TOOL_CALLS][1, 2]"


def test_harmony_tool_call_without_tools_is_content() -> None:
    parser = make_parser("harmony", reasoning=None, reasoning_started=False, tools=False)
    text = '<|channel|>commentary to=functions.f <|constrain|>json<|message|>{"a": 1}<|call|>'
    assert fold(feed_all(parser, [text])).content == '{"a": 1}'


def test_harmony_missing_end_token_before_next_header() -> None:
    text = "<|channel|>analysis<|message|>think<|start|>assistant<|channel|>final<|message|>done"
    result = run("harmony", list(text))
    assert (result.reasoning, result.content) == ("think", "done")


def test_llama_json_answer_followed_by_semicolon_text_is_kept() -> None:
    assert run("llama3_json", list('{"answer": 42}; ok')).content == '{"answer": 42}; ok'


def test_stray_closing_tags_are_dropped() -> None:
    assert run("hermes", ["a</tool_call>b"]).content == "ab"
    assert run("hermes", ["a</think>b"], think="think").content == "ab"


def test_glm4_values_parse_as_json_when_they_can() -> None:
    text = '<tool_call>f\n<arg_key>a</arg_key><arg_value>"quoted"</arg_value>'
    text += "<arg_key>b</arg_key><arg_value>{'x': None}</arg_value><arg_key>c</arg_key><arg_value>-5 C</arg_value>"
    text += "<arg_key>d</arg_key><arg_value></arg_value></tool_call>"
    assert run("glm4", list(text)).calls == [("f", {"a": "quoted", "b": {"x": None}, "c": "-5 C", "d": ""})]


def test_glm4_string_values_stream() -> None:
    parser = make_parser("glm4", reasoning=None, reasoning_started=False, tools=True)
    events = parser.feed("<tool_call>write\n<arg_key>body</arg_key>\n<arg_value>Dear Sir,\n  ")
    assert [e for e in events if isinstance(e, ToolCallArgsDelta)] == [ToolCallArgsDelta(0, '{"body": "Dear Sir,')]
    assert parser.feed("thanks\n</arg_value></tool_call>") == [ToolCallArgsDelta(0, '\\n  thanks"}')]
