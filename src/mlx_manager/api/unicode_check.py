"""One check of every model-serving request body, before validation: a lone surrogate (a JSON escape from \\ud800 to
\\udfff without its pair) anywhere in it, in nested content, tool arguments and keys too, is a 400 naming where.
Python's json accepts them, but no UTF-8 consumer (tokenizers, the database, the JSON reply) can encode them.
So is nesting deeper than MAX_DEPTH: templates, grammars and size checks walk bodies recursively, and a schema a
few hundred objects deep would otherwise end in a RecursionError (a 500) in one of them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

_SURROGATE = re.compile("[\ud800-\udfff]")
MESSAGE = "must be valid Unicode text; it holds a lone surrogate (an escape from \\ud800 to \\udfff without its pair)"
MAX_DEPTH = 128  # arrays and objects within one another; real tool schemas and content stay far below

Path = tuple[str | int, ...]


def first_problem(data: Any) -> tuple[str, Path] | None:
    """("surrogate", the first string or key holding a lone surrogate) or ("depth", the first array or object past
    MAX_DEPTH), or None. Iterative: bodies may nest deeply."""
    stack: list[tuple[Path, Any]] = [((), data)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "surrogate", path
            continue
        if len(path) >= MAX_DEPTH:
            return "depth", path
        if isinstance(item, dict):
            for key in item:
                if _SURROGATE.search(key):
                    return "surrogate", path  # the key itself cannot be echoed back, so name the object holding it
            stack.extend(((*path, key), value) for key, value in reversed(item.items()) if _nested(value))
        elif isinstance(item, list):
            stack.extend(((*path, i), value) for i, value in reversed(list(enumerate(item))) if _nested(value))
    return None


def _nested(value: Any) -> bool:
    # Numbers and booleans, the bulk of a token-id body, need no visit.
    return isinstance(value, str | dict | list)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return content_type.endswith("json")


async def refuse_lone_surrogates(request: Request) -> None:
    if not _is_json(request) or not await request.body():
        return
    try:
        data = await request.json()  # cached on the request: the route parses it once
    except json.JSONDecodeError:
        return  # not JSON: the route's own parsing answers that
    except RecursionError as exc:  # arrays or objects nested past what Python's parser recurses into
        message = f"The request body nests arrays and objects too deeply to be read (at most {MAX_DEPTH} levels)."
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": message}]) from exc
    except ValueError as exc:  # JSON Python cannot hold: bytes that are not UTF-8, a number of 4300+ digits
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": _unreadable(exc)}]) from exc
    found = first_problem(data)
    if found is not None and found[0] == "depth":
        message = f"nests arrays and objects more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} are accepted"
        raise RequestValidationError([{"type": "value_error", "loc": ("body", *found[1][:8]), "msg": message}])
    if found is not None:
        path = found[1]
        message = MESSAGE if path else f"The request body {MESSAGE}"
        error = {"type": "string_unicode", "loc": ("body", *path), "msg": message}
        raise RequestValidationError([error], body=data)


def _unreadable(exc: ValueError) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"The request body is not UTF-8: {exc.reason} at byte {exc.start}."
    return f"The request body could not be read: {str(exc).split(';')[0]}."


class UnicodeCheckedRoute(APIRoute):
    """Routes whose JSON bodies are checked for lone surrogates before FastAPI validates them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            await refuse_lone_surrogates(request)
            return await handler(request)

        return checked
