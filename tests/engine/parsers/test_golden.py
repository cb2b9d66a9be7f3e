"""Every golden fixture parses to the same result however the text is cut into pieces."""

from __future__ import annotations

import random

import pytest

from mlx_manager.engine.parsers import FORMATS
from tests.engine.parsers.fixtures import FIXTURES, MARKUP, THINK_MARKUP, Fixture
from tests.engine.parsers.harness import Result, run


def _parse(fx: Fixture, pieces: list[str]) -> Result:
    return run(fx.format, pieces, think=fx.think, started=fx.started)


def _assert_clean(fx: Fixture, result: Result) -> None:
    for marker in MARKUP[fx.format] + (THINK_MARKUP if fx.think else ()):
        if marker not in fx.content:
            assert marker not in result.content, f"{marker!r} leaked into content"
        if marker not in fx.reasoning:
            assert marker not in result.reasoning, f"{marker!r} leaked into reasoning"


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_fixture_parses_in_one_piece(fx: Fixture) -> None:
    result = _parse(fx, [fx.text])
    assert (result.content, result.reasoning, result.calls) == (fx.content, fx.reasoning, fx.calls)
    _assert_clean(fx, result)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_fixture_parses_one_character_at_a_time(fx: Fixture) -> None:
    result = _parse(fx, list(fx.text))
    assert (result.content, result.reasoning, result.calls) == (fx.content, fx.reasoning, fx.calls)
    _assert_clean(fx, result)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_fixture_parses_when_split_in_two_at_every_position(fx: Fixture) -> None:
    expected = (fx.content, fx.reasoning, fx.calls)
    for cut in range(len(fx.text) + 1):
        result = _parse(fx, [fx.text[:cut], fx.text[cut:]])
        assert (result.content, result.reasoning, result.calls) == expected, f"cut at {cut}"
        _assert_clean(fx, result)


@pytest.mark.parametrize("fx", FIXTURES, ids=lambda fx: fx.id)
def test_fixture_parses_when_split_into_random_pieces(fx: Fixture) -> None:
    rng = random.Random(fx.id)
    expected = (fx.content, fx.reasoning, fx.calls)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(fx.text)), rng.randint(2, 12)))
        pieces = [fx.text[a:b] for a, b in zip([0, *cuts], [*cuts, len(fx.text)], strict=True)]
        result = _parse(fx, pieces)
        assert (result.content, result.reasoning, result.calls) == expected, f"pieces {pieces}"


def test_every_format_has_golden_fixtures() -> None:
    assert {fx.format for fx in FIXTURES} == set(FORMATS)
