"""The JSON transducer: lenient input, strict output, and a repair suffix valid at every cut."""

from __future__ import annotations

import json

import pytest

from mlx_manager.engine.parsers.jsonstream import JsonStream, loads_lenient

SAMPLE = '{"a": [1, -2.5e3, true, null], "b": {"c": "x\\"y\\u00e9\\n"}, "d": "", "e": [], "f": {}}'


def _feed(text: str) -> JsonStream:
    stream, i = JsonStream(), 0
    while i < len(text) and not stream.done and not stream.error:
        j = stream.step(text, i)
        if j == i:
            break
        i = j
    return stream


def test_output_equals_input_value() -> None:
    stream = _feed(SAMPLE)
    assert stream.done and json.loads(stream.text()) == json.loads(SAMPLE)


def test_released_output_plus_repair_is_valid_json_at_every_cut() -> None:
    for cut in range(1, len(SAMPLE)):
        stream = _feed(SAMPLE[:cut])
        assert not stream.error
        json.loads(stream.text(0, stream.safe_n) + stream.repair)


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("{'a': 'it\\'s', \"b\": 'say \"hi\"'}", {"a": "it's", "b": 'say "hi"'}),
        ("{'t': True, 'f': False, 'n': None}", {"t": True, "f": False, "n": None}),
        ('{"a": [1, 2,], "b": 3,}', {"a": [1, 2], "b": 3}),
        ('{"num": .5, "big": 1_000}', {"num": 0.5, "big": 1000}),
        ('{"raw": "line\nbreak\ttab"}', {"raw": "line\nbreak\ttab"}),
    ],
)
def test_lenient_input_becomes_strict_json(source: str, value: object) -> None:
    stream = _feed(source)
    assert stream.done and json.loads(stream.text()) == value


@pytest.mark.parametrize("source", ['{"a" 1}', '{"a": 1 2}', '{"a": nope}', '"top-level string"', '{"a": 1]'])
def test_invalid_input_is_an_error(source: str) -> None:
    assert _feed(source).error


def test_stops_at_the_end_of_the_value() -> None:
    stream, text = JsonStream(), '{"a": 1} trailing'
    i = 0
    while not stream.done:
        i = stream.step(text, i)
    assert text[i:] == " trailing"


def test_loads_lenient_accepts_json_and_python_literals() -> None:
    assert loads_lenient('{"a": 1}') == {"a": 1}
    assert loads_lenient("{'a': (1, 2), 'b': None}") == {"a": [1, 2], "b": None}
    with pytest.raises(ValueError):
        loads_lenient("not a literal")
