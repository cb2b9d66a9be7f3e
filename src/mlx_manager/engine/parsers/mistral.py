"""Mistral calls, after a ``[TOOL_CALLS]`` token; text before it is content.

[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]     (v3 tokenizers)
[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}                          (v11 and later)
"""

from __future__ import annotations

import re

from mlx_manager.engine.parsers.calls import JsonBodyParser

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID = "[CALL_ID]"
_HEADER = re.compile(r"\s*([\w.\-]+)\s*(?:\[CALL_ID\]\s*[\w\-]*\s*)?\[ARGS\]")
_PARTIAL_HEADER = re.compile(r"\s*[\w.\-]*\s*(?:\[CALL_ID\]\s*[\w\-]*\s*)?")


def _could_be_header(buf: str) -> bool:
    m = _PARTIAL_HEADER.match(buf)
    rest = buf[m.end() :] if m else buf
    return ARGS.startswith(rest) or CALL_ID.startswith(rest)


class MistralParser(JsonBodyParser):
    def _text_mode(self) -> bool:
        if not self._scan((TOOL_CALLS,), self.text):
            return False
        self._mode = self._calls_mode
        return True

    def _calls_mode(self) -> bool:
        if not self._skip_ws():
            if self._final:
                self._mode = self._text_mode
            return self._final
        if self._buf[0] in "[{":
            self._begin(TOOL_CALLS, "")
        else:
            self._mode = self._header_mode
        return True

    def _header_mode(self) -> bool:
        """``name[ARGS]``, possibly repeated without another [TOOL_CALLS]."""
        m = _HEADER.match(self._buf)
        if m:
            self._buf = self._buf[m.end() :]
            self._begin(f"{m.group(1)}{ARGS}", "", name=m.group(1), after=self._header_mode)
            return True
        if not self._final and _could_be_header(self._buf):
            return False
        self._mode = self._text_mode
        return True
