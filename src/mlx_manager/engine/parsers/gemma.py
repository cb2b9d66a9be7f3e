"""Gemma 3 calls. Gemma has no tool tokens; the usual prompt convention asks for either a fenced Python call

    ```tool_code
    get_weather(city="Paris")
    ```

(anywhere in the reply) or a bare JSON object ``{"name": ..., "parameters": {...}}`` as the whole reply.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from mlx_manager.engine.parsers.base import IdFactory
from mlx_manager.engine.parsers.calls import JsonBodyParser
from mlx_manager.engine.parsers.jsonstream import literal_to_json, parse_python

FENCE = "```tool_code"
FENCE_END = "```"


def _call_name(func: ast.expr) -> str | None:
    # default_api.get_weather -> get_weather: tool names cannot contain dots.
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def parse_python_calls(code: str) -> list[tuple[str, dict[str, Any]]] | None:
    """Keyword-argument calls, one per line or in a list, optionally wrapped in print(); None if anything else."""
    try:
        tree = parse_python(code.strip())
    except (SyntaxError, ValueError):
        return None
    assert isinstance(tree, ast.Module)
    nodes: list[ast.expr] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            return None
        value = stmt.value
        nodes.extend(value.elts if isinstance(value, ast.List | ast.Tuple) else [value])
    calls = []
    for node in nodes:
        if isinstance(node, ast.Call) and _call_name(node.func) == "print" and len(node.args) == 1:
            node = node.args[0]
        if not isinstance(node, ast.Call) or node.args:
            return None
        name = _call_name(node.func)
        if name is None or any(kw.arg is None for kw in node.keywords):
            return None
        try:
            args = {str(kw.arg): literal_to_json(kw.value) for kw in node.keywords}
        except (ValueError, TypeError, SyntaxError, RecursionError):
            return None
        calls.append((name, args))
    return calls or None


class GemmaParser(JsonBodyParser):
    def __init__(self, id_factory: IdFactory | None = None) -> None:
        super().__init__(id_factory)
        self._mode = self._start_mode

    def _start_mode(self) -> bool:
        body = self._buf.lstrip()
        if body.startswith("{"):
            lead, self._buf = self._buf[: len(self._buf) - len(body)], body
            self._begin(lead, "")
            return True
        if not body and not self._final:
            return False
        self._mode = self._text_mode
        return True

    def _text_mode(self) -> bool:
        if not self._scan((FENCE,), self.text):
            return False
        self._mode = self._code_mode
        return True

    def _code_mode(self) -> bool:
        pos = self._buf.find(FENCE_END)
        if pos < 0:
            return False
        self._emit_code(self._buf[:pos], FENCE_END)
        self._buf = self._buf[pos + len(FENCE_END) :]
        self._mode = self._text_mode
        return True

    def _emit_code(self, code: str, fence_end: str) -> None:
        calls = parse_python_calls(code)
        if calls is None:  # an ordinary code block after all
            self.text(FENCE + code + fence_end)
            return
        for name, args in calls:
            self.call_args(self.start_call(name), json.dumps(args, ensure_ascii=False))
        self._trim = True

    def _close(self) -> None:
        if self._mode == self._code_mode:
            self._emit_code(self._buf, "")
        super()._close()
