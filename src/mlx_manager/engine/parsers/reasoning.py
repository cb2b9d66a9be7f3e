"""Reasoning between think tags, and the pipeline that hands everything else to a tool-call parser."""

from __future__ import annotations

from mlx_manager.engine.parsers.base import BaseParser, Event, OutputParser, TextDelta, merge_into


class ThinkParser(BaseParser):
    """Text inside ``start``..``end`` is reasoning, the rest is passed on as text.

    ``started``: the prompt already opened the block (Qwen3 thinking, DeepSeek-R1), so output begins inside it.
    Whitespace just inside the tags and just after the closing tag is layout and is dropped.
    """

    def __init__(self, start: str = "<think>", end: str = "</think>", started: bool = False) -> None:
        super().__init__()
        self.start, self.end = start, end
        self._inside = started
        self._lead = started  # at the start of a reasoning block
        self._ws = ""  # trailing whitespace of the reasoning so far

    def _run(self) -> None:
        while True:
            if self._inside:
                if not self._scan((self.end,), self._think):
                    return
                self._ws, self._trim = "", True
            elif not (marker := self._scan((self.start, self.end), self.text)):
                return
            elif marker == self.end:  # stray: the block was opened in the prompt after all; drop the tag
                continue
            else:
                self._lead = True
            self._inside = not self._inside

    def _think(self, text: str) -> None:
        if self._lead:
            text = text.lstrip()
            self._lead = not text
        text = self._ws + text
        body = text.rstrip()
        self._ws = text[len(body) :]
        self.reasoning(body)


class Pipeline:
    """Reasoning first, then tools: only text outside reasoning reaches the tool parser."""

    def __init__(self, reasoning: ThinkParser | None, tools: OutputParser | None) -> None:
        self.reasoning = reasoning
        self.tools = tools

    def feed(self, text: str) -> list[Event]:
        return self._route(self.reasoning.feed(text) if self.reasoning else [TextDelta(text)])

    def finish(self) -> list[Event]:
        events = self._route(self.reasoning.finish() if self.reasoning else [])
        for event in self.tools.finish() if self.tools else []:
            merge_into(events, event)
        return events

    def _route(self, events: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in events:
            if isinstance(event, TextDelta) and self.tools:
                for routed in self.tools.feed(event.text):
                    merge_into(out, routed)
            elif not isinstance(event, TextDelta) or event.text:
                merge_into(out, event)
        return out
