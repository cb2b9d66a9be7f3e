"""Incremental JSON transducer: lenient JSON (or Python-literal) text in, strict JSON out.

Output is released only at safe points — where a known suffix (``repair``) turns everything released so far
into valid JSON — so a generation cut short can still yield a well-formed arguments object.
"""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from typing import Any, ClassVar

_CLOSER = {"{": "}", "[": "]"}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_LITERALS = {"true": "true", "false": "false", "null": "null", "True": "true", "False": "false", "None": "null"}
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
_HEX = frozenset("0123456789abcdefABCDEF")
_PLAIN_RUN = re.compile(r"[^\"'\\\x00-\x1f]+")

VALUE, VALUE_OR_END, KEY_OR_END, COLON, AFTER, STRING, BARE = range(7)


class JsonStream:
    """One top-level object or array, fed piece by piece through ``step``."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.state = VALUE
        self.done = False
        self.error = False
        self.key: str | None = None  # last object key read, at any depth
        self.n = 0  # output characters produced
        self.safe_n = 0  # output characters released
        self.repair = ""  # closes the released output into valid JSON
        self._out: list[str] = []
        self._safe_idx = 0
        self._taken_idx = 0
        self._closers = ""
        self._quote = ""
        self._in_key = False
        self._esc = 0  # -1 right after a backslash, k > 0 while k \u hex digits are due
        self._comma = False  # a ", " not yet followed by a value, dropped if the container closes
        self._part: list[str] = []  # current key or bare token

    def text(self, start: int = 0, end: int | None = None) -> str:
        return "".join(self._out)[start:end]

    def take(self) -> str:
        """Released output not taken before."""
        chunk = "".join(self._out[self._taken_idx : self._safe_idx])
        self._taken_idx = self._safe_idx
        return chunk

    def step(self, text: str, i: int) -> int:
        """Consume text[i] (or a run of plain string characters); return the next index, or i on error."""
        if self.state == STRING and self._esc == 0 and (m := _PLAIN_RUN.match(text, i)):
            self._emit(m.group())
            if self._in_key:
                self._part.append(m.group())
            else:
                self._release()
            return m.end()
        c = text[i]
        if self.state == STRING:
            self._string_char(c)
        else:
            self._structural(c)
        return i if self.error else i + 1

    def _emit(self, out: str) -> None:
        self._out.append(out)
        self.n += len(out)

    def _release(self) -> None:
        self._safe_idx = len(self._out)
        self.safe_n = self.n
        in_value = self.state == STRING and not self._in_key
        self.repair = ('"' if in_value else "") + self._closers

    def _fail(self) -> None:
        self.error = True

    def _value_done(self) -> None:
        self.state = AFTER
        self.done = not self.stack
        self._release()

    def _structural(self, c: str) -> None:
        if self.state == BARE:
            if c in _BARE:
                self._part.append(c)
                return
            if not self._end_bare():
                return
        if c in " \t\r\n":
            return
        st = self.state
        if st in (VALUE, VALUE_OR_END):
            if c == "]" and st == VALUE_OR_END:
                self._close(c)
            elif c in "{[":
                self.stack.append(c)
                self._closers = _CLOSER[c] + self._closers
                self._emit(c)
                self.state = KEY_OR_END if c == "{" else VALUE_OR_END
                self._comma = False
                self._release()
            elif not self.stack:
                self._fail()  # the top level must be an object or array
            elif c in "\"'":
                self._open_string(c, key=False)
            elif c in _BARE:
                self._comma = False
                self._part = [c]
                self.state = BARE
            else:
                self._fail()
        elif st == KEY_OR_END:
            if c == "}":
                self._close(c)
            elif c in "\"'":
                self._open_string(c, key=True)
            else:
                self._fail()
        elif st == COLON:
            if c == ":":
                self._emit(": ")
                self.state = VALUE
            else:
                self._fail()
        elif c == ",":  # AFTER
            self._emit(", ")
            self._comma = True
            self.state = KEY_OR_END if self.stack[-1] == "{" else VALUE_OR_END
        elif c in "}]":
            self._close(c)
        else:
            self._fail()

    def _close(self, c: str) -> None:
        if _CLOSER[self.stack[-1]] != c:
            self._fail()
            return
        if self._comma:  # trailing comma
            self._out.pop()
            self.n -= 2
            self._comma = False
        self.stack.pop()
        self._closers = self._closers[1:]
        self._emit(c)
        self._value_done()

    def _open_string(self, quote: str, key: bool) -> None:
        self._quote, self._in_key, self._comma = quote, key, False
        self._part = []
        self._emit('"')
        self.state = STRING
        if not key:
            self._release()

    def _string_char(self, c: str) -> None:
        if self._esc == -1:
            self._esc = 0
            if c == "u":
                out, self._esc = "\\u", 4
            elif c in '"\\/bfnrt':
                out = "\\" + c
            elif c == "\n":  # Python line continuation
                out = ""
            else:  # \' or an escape JSON lacks: keep the character itself
                out = json.dumps(c)[1:-1]
        elif self._esc > 0:
            if c not in _HEX:
                self._fail()
                return
            out = c
            self._esc -= 1
        elif c == "\\":
            self._esc = -1
            return
        elif c == self._quote:
            self._emit('"')
            if self._in_key:
                self.key = json.loads('"' + "".join(self._part) + '"')
                self.state = COLON
            else:
                self._value_done()
            return
        else:
            out = json.dumps(c)[1:-1]  # a stray " or a raw control character
        self._emit(out)
        if self._in_key:
            self._part.append(out)
        elif self._esc == 0:
            self._release()

    def _end_bare(self) -> bool:
        token = "".join(self._part)
        out = _LITERALS.get(token)
        if out is None and _NUMBER.fullmatch(token):
            out = token
        if out is None:
            try:
                value = ast.literal_eval(token)
            except (ValueError, SyntaxError):
                value = None
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out = json.dumps(value)
        if out is None:
            self._fail()
            return False
        self._emit(out)
        self._value_done()
        return True


class _JsonNames(ast.NodeTransformer):
    """Let ast.literal_eval read true/false/null as Python would read True/False/None."""

    _values: ClassVar[dict[str, Any]] = {"true": True, "false": False, "null": None}

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if node.id in self._values:
            return ast.copy_location(ast.Constant(self._values[node.id]), node)
        return node


def literal_to_json(node: ast.expr) -> Any:
    """A Python literal expression as a JSON-compatible value (tuples become lists)."""
    value = ast.literal_eval(_JsonNames().visit(node))
    return json.loads(json.dumps(value, default=list))


def parse_python(code: str, mode: str = "exec") -> ast.AST:
    """ast.parse without SyntaxWarnings for model text such as ``1abc``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(code, mode=mode)


def loads_lenient(text: str) -> Any:
    """JSON, or a Python literal; raises ValueError when it is neither."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        tree = parse_python(text.strip(), mode="eval")
        assert isinstance(tree, ast.Expression)
        return literal_to_json(tree.body)
    except (SyntaxError, ValueError, TypeError, RecursionError) as e:
        raise ValueError(f"not JSON or a Python literal: {text[:80]!r}") from e
