"""Stop strings match across any split of the text and are never emitted."""

from __future__ import annotations

import pytest

from mlx_manager.engine.stopping import StopMatcher

TEXT = "Hello world. STOP here and more"


def _run(pieces: list[str], stops: list[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = ""
    for piece in pieces:
        text, hit = matcher.feed(piece)
        out += text
        if hit:
            return out, True
    return out + matcher.flush(), False


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_stop_string_found_wherever_the_text_is_split(cut: int) -> None:
    assert _run([TEXT[:cut], TEXT[cut:]], ["STOP"]) == ("Hello world. ", True)


def test_stop_string_split_into_single_characters() -> None:
    assert _run(list(TEXT), ["STOP"]) == ("Hello world. ", True)


def test_earliest_of_several_stops_wins() -> None:
    assert _run([TEXT], ["more", "world"]) == ("Hello ", True)


def test_partial_match_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == ("abc ", False)
    assert matcher.feed("AY") == ("STAY", False)


def test_held_back_text_is_flushed_at_the_end() -> None:
    assert _run(["end ST"], ["STOP"]) == ("end ST", False)


def test_no_stops_passes_text_through() -> None:
    assert StopMatcher([]).feed("anything") == ("anything", False)
