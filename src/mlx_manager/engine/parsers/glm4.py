"""GLM-4.5 / 4.6 calls: a name line, then key/value pairs in tags.

    <tool_call>get_weather
    <arg_key>city</arg_key>
    <arg_value>Paris</arg_value>
    </tool_call>

A value is JSON (or a Python literal) when it parses, else a string. Values that cannot start JSON stream as
strings; the others are held until complete. A JSON object in place of the name line is read Hermes-style.

GLM-4 can emit the same call twice in one reply: each call is held until it is complete, and one with the name
and arguments of an earlier call is dropped (the calls after it keep contiguous indices).
"""

from __future__ import annotations

import json

from mlx_manager.engine.parsers.base import Event, IdFactory, ToolCallArgsDelta, ToolCallStart
from mlx_manager.engine.parsers.calls import JsonBodyParser
from mlx_manager.engine.parsers.jsonstream import loads_lenient

START = "<tool_call>"
END = "</tool_call>"
KEY = "<arg_key>"
KEY_END = "</arg_key>"
VALUE = "<arg_value>"
VALUE_END = "</arg_value>"
_MAYBE_JSON = frozenset('{["-0123456789tfnTFN"')


def _value_json(raw: str) -> str:
    try:
        value = loads_lenient(raw) if raw else raw
    except ValueError:
        value = raw
    return json.dumps(value, ensure_ascii=False)


def _identity(events: list[ToolCallStart | ToolCallArgsDelta]) -> tuple[str, object]:
    """A call's name and arguments (parsed, so layout does not matter)."""
    name = next((e.name for e in events if isinstance(e, ToolCallStart)), "")
    raw = "".join(e.fragment for e in events if isinstance(e, ToolCallArgsDelta))
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def _drop(_: str) -> None:
    """Stray text between tags is markup layout."""


class Glm4Parser(JsonBodyParser):
    def __init__(self, id_factory: IdFactory | None = None) -> None:
        super().__init__(id_factory)
        self._index = -1
        self._nargs = 0
        self._kind = ""  # of the value being read: "" undecided, "json" held, "str" streaming
        self._ws = ""  # trailing whitespace of a streaming string, dropped if the value ends there
        self._held: dict[int, list[ToolCallStart | ToolCallArgsDelta]] = {}  # calls not complete yet
        self._first: list[ToolCallStart | ToolCallArgsDelta] = []  # the first call, streamed as it comes
        self._seen: list[tuple[str, object]] = []  # name and arguments of each complete call emitted
        self._emitted = 0

    def _text_mode(self) -> bool:
        marker = self._scan((START, END), self.text)
        if marker == START:
            self._mode = self._name_mode
        return bool(marker)  # a stray END is a special token: dropped

    def _name_mode(self) -> bool:
        body = self._buf.lstrip()
        if body.startswith("{"):
            self._buf = body
            self._begin(START, END)
            return True
        ends = [p for p in (body.find("\n"), body.find("<")) if p >= 0]
        if not ends:
            if self._final:  # unterminated before the call began
                self.text(START + self._buf)
                self._buf = ""
            return False
        name = body[: min(ends)].strip()
        if not name:
            self.text(START)
            self._mode = self._text_mode
            return True
        self._buf = body[min(ends) :]
        self._index, self._nargs = self.start_call(name), 0
        self._mode = self._args_mode
        return True

    def _args_mode(self) -> bool:
        marker = self._scan((KEY, END), _drop)
        if marker == KEY:
            self._mode = self._key_mode
        elif marker == END:
            self._end_call()
        return bool(marker)

    def _end_call(self) -> None:
        self.call_args(self._index, "}" if self._nargs else "{}")
        self._index, self._trim = -1, True
        self._mode = self._text_mode

    def _key_mode(self) -> bool:
        pos = self._buf.find(KEY_END)
        if pos < 0:
            return False
        key = self._buf[:pos].strip()
        self._buf = self._buf[pos + len(KEY_END) :]
        self.call_args(self._index, ("{" if not self._nargs else ", ") + json.dumps(key, ensure_ascii=False) + ": ")
        self._nargs += 1
        self._mode = self._value_open_mode
        return True

    def _value_open_mode(self) -> bool:
        if not self._scan((VALUE,), _drop):
            return False
        self._kind, self._ws = "", ""
        self._mode = self._value_mode
        return True

    def _value_mode(self) -> bool:
        if not self._kind:
            body = self._buf.lstrip()
            self._buf = body
            if not body:
                return False
            self._kind = "json" if body[0] in _MAYBE_JSON else "str"
            if self._kind == "str":
                self.call_args(self._index, '"')
        if self._kind == "json":
            pos = self._buf.find(VALUE_END)
            if pos < 0:
                return False
            self.call_args(self._index, _value_json(self._buf[:pos].strip()))
            self._buf = self._buf[pos + len(VALUE_END) :]
        elif self._scan((VALUE_END,), self._string_piece):
            self.call_args(self._index, '"')
        else:
            return False
        self._mode = self._args_mode
        return True

    def _drain(self) -> list[Event]:
        """The first call streams as it comes; later ones are held until complete, then dropped if repeated."""
        out: list[Event] = []
        for event in super()._drain():
            if isinstance(event, ToolCallStart | ToolCallArgsDelta) and event.index > 0:
                self._held.setdefault(event.index, []).append(event)
                continue
            if isinstance(event, ToolCallStart | ToolCallArgsDelta):
                self._first.append(event)
                self._emitted = 1
            out.append(event)
        open_call = self._calls - 1 if not self._final and (self._index >= 0 or self._mode == self._body_mode) else -1
        for index in sorted(i for i in self._held if i != open_call):
            if not self._seen:
                self._seen.append(_identity(self._first))
            out.extend(self._unique(self._held.pop(index)))
        return out

    def _unique(self, events: list[ToolCallStart | ToolCallArgsDelta]) -> list[Event]:
        """A complete call, renumbered, or nothing when an earlier call had its name and arguments."""
        identity = _identity(events)
        if identity in self._seen:
            return []
        self._seen.append(identity)
        index, self._emitted = self._emitted, self._emitted + 1
        return [
            ToolCallStart(index, e.id, e.name) if isinstance(e, ToolCallStart) else ToolCallArgsDelta(index, e.fragment)
            for e in events
        ]

    def _string_piece(self, piece: str) -> None:
        piece = self._ws + piece
        body = piece.rstrip()
        self._ws = piece[len(body) :]
        if body:
            self.call_args(self._index, json.dumps(body, ensure_ascii=False)[1:-1])

    def _close(self) -> None:
        if self._index < 0:
            super()._close()
            return
        if self._mode == self._value_open_mode or (self._mode == self._value_mode and not self._kind):
            self.call_args(self._index, "null")
        elif self._mode == self._value_mode and self._kind == "json":
            self.call_args(self._index, _value_json(self._buf.strip()))
        elif self._mode == self._value_mode:
            self.call_args(self._index, '"')
        self._end_call()
