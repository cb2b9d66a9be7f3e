"""gpt-oss "harmony" output: messages on channels, generation starting just after the prompt's ``<|start|>assistant``.

    <|channel|>analysis<|message|>Need the weather.<|end|>
    <|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "X"}<|call|>
    <|start|>assistant<|channel|>final<|message|>It is sunny.<|return|>

analysis is reasoning; a message with a ``to=`` recipient is a tool call; every other message is content.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from mlx_manager.engine.parsers.base import IdFactory
from mlx_manager.engine.parsers.calls import JsonBodyParser

START = "<|start|>"
CHANNEL = "<|channel|>"
MESSAGE = "<|message|>"
END = "<|end|>"
RETURN = "<|return|>"
CALL = "<|call|>"
_HEADERS = (START, CHANNEL)
_ENDS = (END, RETURN, CALL, START, CHANNEL)
_CHANNEL = re.compile(r"<\|channel\|>\s*(\w+)")
_RECIPIENT = re.compile(r"\bto=([^\s<]+)")


class HarmonyParser(JsonBodyParser):
    def __init__(self, id_factory: IdFactory | None = None, tools: bool = True) -> None:
        super().__init__(id_factory)
        self._tools = tools
        self._header = ""
        self._trim = True  # whitespace around messages is layout

    def _text_mode(self) -> bool:
        """Between messages; stray text there is content."""
        marker = self._scan((*_HEADERS, END, RETURN, CALL), self.text)
        if marker in _HEADERS:
            self._header = marker
            self._mode = self._header_mode
        return bool(marker)

    def _header_mode(self) -> bool:
        pos = self._buf.find(MESSAGE)
        if pos < 0:
            return False
        header = self._header + self._buf[:pos]
        self._buf = self._buf[pos + len(MESSAGE) :]
        channel = _CHANNEL.search(header)
        recipient = _RECIPIENT.search(header)
        if recipient and self._tools:
            self._begin("", CALL, name=recipient.group(1).removeprefix("functions."))
        elif channel and channel.group(1) == "analysis":
            self._mode = self._reasoning_mode
        else:
            self._mode = self._content_mode
        return True

    def _reasoning_mode(self) -> bool:
        return self._body(self.reasoning)

    def _content_mode(self) -> bool:
        return self._body(self.text)

    def _body(self, emit: Callable[[str], None]) -> bool:
        marker = self._scan(_ENDS, emit)
        if not marker:
            return False
        self._trim = True
        if marker in _HEADERS:  # the end token went missing
            self._header = marker
            self._mode = self._header_mode
        else:
            self._mode = self._text_mode
        return True
