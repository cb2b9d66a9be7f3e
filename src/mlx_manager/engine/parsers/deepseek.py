"""DeepSeek-R1 / V3 calls, in a block of full-width-bar special tokens.

    <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
    ```json
    {"city": "Paris"}
    ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>

V3.1 drops the type and the fence:

    <｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>
"""

from __future__ import annotations

from mlx_manager.engine.parsers.base import IdFactory
from mlx_manager.engine.parsers.calls import JsonBodyParser

CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
CALLS_END = "<｜tool▁calls▁end｜>"
CALL_BEGIN = "<｜tool▁call▁begin｜>"
CALL_END = "<｜tool▁call▁end｜>"
SEP = "<｜tool▁sep｜>"
FENCE = "```"


class DeepSeekParser(JsonBodyParser):
    def __init__(self, id_factory: IdFactory | None = None) -> None:
        super().__init__(id_factory)
        self._held = ""  # markup of a call not begun yet, given back as text if the output stops there
        self._kind = ""
        self._name = ""

    def _text_mode(self) -> bool:
        marker = self._scan((CALLS_BEGIN, CALL_BEGIN, CALL_END, CALLS_END, SEP), self.text)
        if marker in (CALLS_BEGIN, CALL_BEGIN):  # the others, stray, are dropped
            self._held = marker
            self._mode = self._head_mode if marker == CALL_BEGIN else self._calls_mode
        return bool(marker)

    def _calls_mode(self) -> bool:
        """Inside the block, between calls."""
        if not self._skip_ws() and not self._final:
            return False
        for marker, mode in ((CALL_BEGIN, self._head_mode), (CALLS_END, self._text_mode)):
            eaten = self._eat(marker)
            if eaten is None:
                return False
            if eaten:
                self._held += marker
                self._trim = self._trim or marker == CALLS_END
                self._mode = mode
                return True
        self._mode = self._text_mode
        return True

    def _head_mode(self) -> bool:
        pos = self._buf.find(SEP)
        if pos < 0:
            return False
        self._kind = self._buf[:pos].strip()
        self._held += self._buf[: pos + len(SEP)]
        self._buf = self._buf[pos + len(SEP) :]
        self._mode = self._sep_mode
        return True

    def _sep_mode(self) -> bool:
        body = self._buf.lstrip()
        if not body:
            return False
        if body[0] == "{" or self._kind not in ("function", ""):  # V3.1: the name came before the separator
            self._name = self._kind
            self._buf = body
            self._begin_args()
        else:
            self._mode = self._name_mode
        return True

    def _name_mode(self) -> bool:
        pos = self._buf.find("\n")
        if pos < 0:
            return False
        self._name = self._buf[:pos].strip()
        self._held += self._buf[: pos + 1]
        self._buf = self._buf[pos + 1 :]
        self._mode = self._fence_mode
        return True

    def _fence_mode(self) -> bool:
        body = self._buf.lstrip()
        if body.startswith(FENCE):
            pos = body.find("\n")
            if pos < 0:
                return False
            self._held += self._buf[: len(self._buf) - len(body) + pos + 1]
            self._buf = body[pos + 1 :]
        elif not body or FENCE.startswith(body):
            return False
        self._begin_args()
        return True

    def _begin_args(self) -> None:
        self._begin(self._held, CALL_END, name=self._name, after=self._calls_mode, drop_to_closer=True)
        self._held = ""

    def _close(self) -> None:
        if self._mode in (self._head_mode, self._sep_mode, self._name_mode, self._fence_mode):
            self.text(self._held + self._buf)
        super()._close()
