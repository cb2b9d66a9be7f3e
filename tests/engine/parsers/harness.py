"""Drive a parser over pieces of text and fold its events into (content, reasoning, calls)."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mlx_manager.engine.parsers import (
    Event,
    OutputParser,
    ReasoningDelta,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallStart,
    make_parser,
)

CALL_ID = re.compile(r"call_[0-9a-f]{24}")


@dataclass
class Result:
    content: str
    reasoning: str
    calls: list[tuple[str, dict[str, Any]]]


def fold(events: Iterable[Event]) -> Result:
    """Concatenate the events, checking the invariants every consumer relies on."""
    content, reasoning = "", ""
    starts: list[ToolCallStart] = []
    args: dict[int, str] = {}
    for event in events:
        if isinstance(event, TextDelta):
            content += event.text
        elif isinstance(event, ReasoningDelta):
            reasoning += event.text
        elif isinstance(event, ToolCallStart):
            assert event.index == len(starts), "calls are numbered 0, 1, 2... in order"
            starts.append(event)
            args[event.index] = ""
        else:
            assert isinstance(event, ToolCallArgsDelta)
            assert event.index in args, "arguments come after their call's start"
            args[event.index] += event.fragment
    assert len({s.id for s in starts}) == len(starts), "call ids are unique"
    calls = []
    for start in starts:
        parsed = json.loads(args[start.index])
        assert isinstance(parsed, dict), "arguments form a JSON object"
        calls.append((start.name, parsed))
    return Result(content, reasoning, calls)


def feed_all(parser: OutputParser, pieces: Iterable[str]) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


def counter_ids() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"call_{next(numbers):024x}"


def run(fmt: str, pieces: Iterable[str], *, think: str | None = None, started: bool = False) -> Result:
    parser = make_parser(fmt, reasoning=think, reasoning_started=started, tools=True, id_factory=counter_ids())
    return fold(feed_all(parser, pieces))
