"""Events produced by the incremental output parsers, and the buffer/emit machinery they share."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgsDelta:
    """JSON text; the fragments of one index, concatenated, form the arguments object."""

    index: int
    fragment: str


Event = TextDelta | ReasoningDelta | ToolCallStart | ToolCallArgsDelta
IdFactory = Callable[[], str]


class OutputParser(Protocol):
    """Splits one generated sequence into content, reasoning and tool calls as it streams."""

    def feed(self, text: str) -> list[Event]: ...

    def finish(self) -> list[Event]: ...


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def merge_into(events: list[Event], event: Event) -> None:
    """Append, joining with the previous event when both are deltas of the same kind."""
    last = events[-1] if events else None
    if isinstance(event, TextDelta) and isinstance(last, TextDelta):
        events[-1] = TextDelta(last.text + event.text)
    elif isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
        events[-1] = ReasoningDelta(last.text + event.text)
    elif isinstance(event, ToolCallArgsDelta) and isinstance(last, ToolCallArgsDelta) and last.index == event.index:
        events[-1] = ToolCallArgsDelta(event.index, last.fragment + event.fragment)
    else:
        events.append(event)


def find_first(buf: str, markers: Iterable[str]) -> tuple[int, str]:
    """Earliest marker in buf as (position, marker); (-1, "") when none."""
    best, found = -1, ""
    for marker in markers:
        pos = buf.find(marker)
        if pos >= 0 and (best < 0 or pos < best or (pos == best and len(marker) > len(found))):
            best, found = pos, marker
    return best, found


def partial_suffix(buf: str, markers: Iterable[str]) -> int:
    """Length of the longest suffix of buf that is a proper prefix of some marker."""
    best = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buf)), best, -1):
            if buf.endswith(marker[:size]):
                best = size
                break
    return best


class BaseParser:
    """Buffer plus a mode loop: each mode consumes some of the buffer and returns whether to keep going."""

    def __init__(self, id_factory: IdFactory | None = None) -> None:
        self._buf = ""
        self._final = False
        self._events: list[Event] = []
        self._calls = 0
        self._trim = False  # drop whitespace that follows a tool call
        self._new_id = id_factory or new_call_id

    def feed(self, text: str) -> list[Event]:
        self._buf += text
        self._run()
        return self._drain()

    def finish(self) -> list[Event]:
        self._final = True
        self._run()
        self._close()
        self._buf = ""
        return self._drain()

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Deal with a construct left open at the end of generation."""

    def _drain(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def text(self, text: str) -> None:
        if self._trim:
            text = text.lstrip()
            self._trim = not text
        if text:
            merge_into(self._events, TextDelta(text))

    def reasoning(self, text: str) -> None:
        if text:
            merge_into(self._events, ReasoningDelta(text))

    def start_call(self, name: str) -> int:
        index = self._calls
        self._calls += 1
        self._events.append(ToolCallStart(index, self._new_id(), name))
        return index

    def call_args(self, index: int, fragment: str) -> None:
        if fragment:
            merge_into(self._events, ToolCallArgsDelta(index, fragment))

    def _scan(self, markers: tuple[str, ...], emit: Callable[[str], None]) -> str:
        """Emit text up to the first marker and consume it; hold back a possible partial marker.

        Returns the marker, or "" when none is complete yet.
        """
        pos, marker = find_first(self._buf, markers)
        if pos >= 0:
            emit(self._buf[:pos])
            self._buf = self._buf[pos + len(marker) :]
            return marker
        keep = 0 if self._final else partial_suffix(self._buf, markers)
        emit(self._buf[: len(self._buf) - keep])
        self._buf = self._buf[len(self._buf) - keep :]
        return ""

    def _skip_ws(self) -> bool:
        """Drop leading whitespace; True when something else follows."""
        self._buf = self._buf.lstrip()
        return bool(self._buf)

    def _eat(self, marker: str) -> bool | None:
        """Consume marker if the buffer starts with it: True, False, or None while too short to tell."""
        if self._buf.startswith(marker):
            self._buf = self._buf[len(marker) :]
            return True
        if marker.startswith(self._buf) and not self._final:
            return None
        return False
