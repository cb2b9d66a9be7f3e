"""Phi-4-mini calls: a JSON array of call objects between markers, or after ``functools``.

<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|>
functools[{"name": "get_weather", "arguments": {"city": "Paris"}}]
"""

from __future__ import annotations

from mlx_manager.engine.parsers.calls import JsonBodyParser

START = "<|tool_call|>"
END = "<|/tool_call|>"
FUNCTOOLS = "functools["


class Phi4Parser(JsonBodyParser):
    def _text_mode(self) -> bool:
        marker = self._scan((START, END, FUNCTOOLS), self.text)
        if marker in ("", END):  # a stray END is a special token: dropped
            return bool(marker)
        if marker == FUNCTOOLS:
            self._buf = "[" + self._buf  # the bracket belongs to the JSON
            self._begin("functools", "")
        else:
            self._begin(START, END)
        return True
