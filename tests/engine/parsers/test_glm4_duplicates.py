"""GLM-4 can emit the same tool call twice in one reply: the repeat is dropped, other calls stay, numbered in order,
whether the text arrives whole or a character at a time."""

from __future__ import annotations

import pytest

from mlx_manager.engine.parsers import TextDelta, ToolCallArgsDelta, ToolCallStart, make_parser
from tests.engine.parsers.harness import run


def _call(name: str, **args: str) -> str:
    pairs = "".join(f"<arg_key>{k}</arg_key>\n<arg_value>{v}</arg_value>\n" for k, v in args.items())
    return f"<tool_call>{name}\n{pairs}</tool_call>"


@pytest.mark.parametrize("whole", [True, False])
def test_a_repeated_call_is_dropped_and_the_rest_renumbered(whole: bool) -> None:
    text = "Checking." + _call("weather", city="Paris") + "\n" + _call("weather", city="Paris")
    text += _call("weather", city="Rome") + _call("time", zone="CET") + _call("weather", city="Rome")
    result = run("glm4", [text] if whole else list(text))
    assert result.calls == [
        ("weather", {"city": "Paris"}),
        ("weather", {"city": "Rome"}),
        ("time", {"zone": "CET"}),
    ]
    assert result.content == "Checking."


def test_the_same_arguments_in_another_layout_are_a_repeat() -> None:
    first = "<tool_call>f\n<arg_key>n</arg_key><arg_value>5</arg_value><arg_key>s</arg_key><arg_value>x</arg_value>"
    again = "<tool_call>f\n<arg_key>n</arg_key>\n<arg_value> 5 </arg_value>\n<arg_key>s</arg_key><arg_value>x"
    result = run("glm4", [first + "</tool_call>" + again + "</arg_value></tool_call>"])
    assert result.calls == [("f", {"n": 5, "s": "x"})]


def test_the_first_call_still_streams_and_a_second_is_released_once_complete() -> None:
    parser = make_parser("glm4", reasoning=None, reasoning_started=False, tools=True)
    early = parser.feed("<tool_call>write\n<arg_key>body</arg_key>\n<arg_value>Dear Sir,")
    assert any(isinstance(e, ToolCallArgsDelta) and e.index == 0 for e in early)
    parser.feed("</arg_value></tool_call><tool_call>write\n<arg_key>body</arg_key>\n<arg_value>Hi")
    held = parser.feed(" there")
    assert not [e for e in held if isinstance(e, ToolCallStart | ToolCallArgsDelta)]
    done = parser.feed("</arg_value></tool_call>ok")
    assert [e.name for e in done if isinstance(e, ToolCallStart)] == ["write"]
    assert [e for e in done if isinstance(e, TextDelta)] == [TextDelta("ok")]


def test_an_unterminated_repeat_at_the_end_is_dropped_too() -> None:
    text = _call("f", a="1") + "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1"
    assert run("glm4", list(text)).calls == [("f", {"a": 1})]
