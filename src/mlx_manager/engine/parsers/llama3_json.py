"""Llama 3.1 / 3.2 / 3.3 JSON calls: the reply itself is the call object, several separated by ``;``.

<|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_time", "parameters": {}}
"""

from __future__ import annotations

from mlx_manager.engine.parsers.base import IdFactory
from mlx_manager.engine.parsers.calls import JsonBodyParser

PYTHON_TAG = "<|python_tag|>"


class Llama3JsonParser(JsonBodyParser):
    def __init__(self, id_factory: IdFactory | None = None) -> None:
        super().__init__(id_factory)
        self._mode = self._start_mode

    def _start_mode(self) -> bool:
        """Decide on the first non-whitespace character: a call object, or plain content."""
        body = self._buf.lstrip()
        lead = self._buf[: len(self._buf) - len(body)]
        if self._calls and body.startswith(";"):  # separates calls
            self._buf = body[1:]
        elif body.startswith("{"):
            self._buf = body
            self._begin(lead, "", after=self._start_mode)
        elif body.startswith(PYTHON_TAG):
            self._buf = body[len(PYTHON_TAG) :]
            self._begin("", "", after=self._start_mode)
        elif not self._final and (not body or PYTHON_TAG.startswith(body)):
            return False
        else:
            self._mode = self._text_mode
        return True

    def _text_mode(self) -> bool:
        # The tag is a special token, so it is markup even in the middle of a reply.
        if not self._scan((PYTHON_TAG,), self.text):
            return False
        self._mode = self._start_mode
        return True
