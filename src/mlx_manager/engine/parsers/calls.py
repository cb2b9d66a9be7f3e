"""Tool calls streamed out of JSON: ``{"name": ..., "arguments": {...}}`` objects, arrays of them, or bare arguments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlx_manager.engine.parsers.base import BaseParser, IdFactory
from mlx_manager.engine.parsers.jsonstream import AFTER, VALUE, JsonStream, loads_lenient

NAME_KEYS = ("name", "function")
ARG_KEYS = ("arguments", "parameters")


def extract_call(obj: Any) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) from a parsed call object, including the OpenAI ``{"function": {...}}`` shape."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        return extract_call(obj["function"])
    name = next((obj[k] for k in NAME_KEYS if isinstance(obj.get(k), str)), None)
    args: Any = next((obj[k] for k in ARG_KEYS if k in obj), {})
    if isinstance(args, str):  # some templates render the arguments as a JSON string
        try:
            args = loads_lenient(args) if args.strip() else {}
        except ValueError:
            return None
    if not name or not isinstance(args, dict):
        return None
    return name, args


class CallStream:
    """Feeds one top-level JSON value and reports the tool calls in it to a parser as they stream.

    With ``name`` the value is the arguments object itself; otherwise it is a call object or an array of them.
    Arguments stream when the name comes before them, else they are sent whole once the call object is complete.
    """

    def __init__(self, sink: BaseParser, name: str | None = None) -> None:
        self.sink = sink
        self.w = JsonStream()
        self.done = False
        self.failed = False  # nothing here is a tool call: the caller re-emits ``raw`` as text
        self.errored = False  # malformed after a call was committed
        self.raw: list[str] = []
        self._fixed = name
        self._base = -1  # depth of a call object's members (0: the value is the arguments); -1 until known
        self._emitted = 0  # calls sent
        self._name: str | None = None
        self._index = -1  # call whose arguments are streaming
        self._args_start = 0
        self._args_end: int | None = None
        self._obj_start = 0
        self._vstart = 0
        self._vkey: str | None = None  # key of the member value being read
        self._taken = 0

    def feed(self, text: str) -> int:
        """Consume text up to the end of the value; returns how much was used."""
        i, w = 0, self.w
        while i < len(text) and not (self.done or self.failed):
            pd, ps, off = len(w.stack), w.state, w.n
            j = w.step(text, i)
            if w.error:
                self._on_error()
                break
            self.raw.append(text[i:j])
            c, i = text[i], j
            d = len(w.stack)
            if self._base < 0 and d:  # the opening bracket decides the shape
                self._base = 0 if self._fixed is not None else (1 if c == "{" else 2)
                if self._fixed is not None and c != "{":
                    self.failed = True
                    break
            if self._base >= 0:
                self._hooks(c, pd, ps, d, off)
            if w.done:
                self._forward()
                self.done = True
                if not self._emitted:
                    self.failed = True
        self._forward()
        return i

    def _hooks(self, c: str, pd: int, ps: int, d: int, off: int) -> None:
        w, base = self.w, self._base
        if self._fixed is not None:
            if pd == 0 and d == 1:
                self._start(self._fixed, off)
            elif d == 0 and self._index >= 0:
                self._args_end = w.n
            return
        if pd == base - 1 and d == base:  # a call object opens
            self._obj_start, self._name, self._index, self._args_end = off, None, -1, None
        elif pd == base and ps == VALUE and (d > pd or w.state != VALUE):  # a value starts
            self._vstart, self._vkey = off, w.key
            if c == "{" and w.key in ARG_KEYS and self._name and self._index < 0:
                self._start(self._name, off)
        elif d == base and w.state == AFTER and (pd != d or ps != AFTER):  # a value ends
            if self._vkey in NAME_KEYS and self._name is None:
                value = json.loads(w.text(self._vstart, w.n))
                self._name = value if isinstance(value, str) and value else None
            elif self._vkey in ARG_KEYS and self._index >= 0 and self._args_end is None:
                self._args_end = w.n
        elif pd == base and d == base - 1:  # a call object closes
            self._forward()
            if self._index < 0:
                call = extract_call(json.loads(w.text(self._obj_start, w.n)))
                if call is not None:
                    self.sink.call_args(self.sink.start_call(call[0]), json.dumps(call[1], ensure_ascii=False))
                    self._emitted += 1
            self._index = -1

    def _start(self, name: str, off: int) -> None:
        self._index = self.sink.start_call(name)
        self._args_start, self._args_end = off, None
        self._emitted += 1

    def _forward(self) -> None:
        """Send the released part of the streaming arguments."""
        lo = self._taken
        chunk = self.w.take()
        self._taken += len(chunk)
        if self._index < 0:
            return
        a = max(self._args_start, lo)
        b = lo + len(chunk) if self._args_end is None else min(self._args_end, lo + len(chunk))
        if b > a:
            self.sink.call_args(self._index, chunk[a - lo : b - lo])

    def _close_args(self) -> None:
        self._forward()
        if self._index >= 0 and self._args_end is None:
            repair = self.w.repair
            self.sink.call_args(self._index, repair[: len(repair) - self._base])
            self._args_end = self.w.n

    def _on_error(self) -> None:
        if not self._emitted:
            self.failed = True
            return
        self._close_args()
        self.done = self.errored = True

    def finish(self) -> None:
        """End of text inside the value: close streaming arguments best-effort, or give it all up as text."""
        if self.done or self.failed:
            return
        self._close_args()
        self.done = True
        self.failed = not self._emitted


class JsonBodyParser(BaseParser):
    """Modes shared by formats that wrap JSON tool calls between an opening and an optional closing marker."""

    def __init__(self, id_factory: IdFactory | None = None) -> None:
        super().__init__(id_factory)
        self._opener = ""
        self._closer = ""
        self._call = CallStream(self)
        self._mode: Callable[[], bool] = self._text_mode
        self._after: Callable[[], bool] = self._text_mode  # where a finished call body leads
        self._drop_to_closer = False

    def _run(self) -> None:
        while self._mode():
            pass

    def _text_mode(self) -> bool:
        raise NotImplementedError

    def _begin(
        self,
        opener: str,
        closer: str,
        name: str | None = None,
        after: Callable[[], bool] | None = None,
        drop_to_closer: bool = False,
    ) -> None:
        """Read a JSON body next. opener: markup re-emitted as text if it is no call; drop_to_closer: discard
        whatever follows the JSON up to closer (else only whitespace is)."""
        self._opener, self._closer = opener, closer
        self._call = CallStream(self, name)
        self._after = after or self._text_mode
        self._drop_to_closer = drop_to_closer
        self._mode = self._body_mode

    def _body_mode(self) -> bool:
        call = self._call
        self._buf = self._buf[call.feed(self._buf) :]
        if call.failed:
            self.text(self._opener + "".join(call.raw))
            self._mode = self._raw_mode if self._closer else self._text_mode
            return True
        if not call.done:
            return False
        self._mode = self._skip_mode if call.errored or self._drop_to_closer else self._closer_mode
        return True

    def _raw_mode(self) -> bool:
        """A body that is no call: text up to its closing marker, which is kept only if the opener was."""
        if not self._scan((self._closer,), self.text):
            return False
        self.text(self._closer if self._opener else "")
        self._mode = self._text_mode
        return True

    def _closer_mode(self) -> bool:
        """After a complete value: an optional closing marker, then text."""
        if not self._skip_ws() and not self._final:
            return False
        if self._closer and self._eat(self._closer) is None:
            return False
        self._trim = True
        self._mode = self._after
        return True

    def _skip_mode(self) -> bool:
        """After malformed JSON: drop everything up to the closing marker."""
        pos = self._buf.find(self._closer) if self._closer else 0
        if pos < 0:
            self._buf = self._buf[len(self._buf) - min(len(self._buf), len(self._closer) - 1) :]
            return False
        self._buf = self._buf[pos + len(self._closer) :]
        self._trim = True
        self._mode = self._after
        return True

    def _close(self) -> None:
        if self._mode == self._body_mode:
            self._call.finish()
            if self._call.failed:
                self.text(self._opener + "".join(self._call.raw))
