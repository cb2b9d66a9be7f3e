"""ASGI middleware: a request id on every response, and a JSON 500 that still carries it."""

from __future__ import annotations

import json
import logging
import re
import uuid

from starlette.types import Message, Receive, Scope, Send

from mlx_manager.api.anthropic.errors import anthropic_error_body, is_anthropic_path
from mlx_manager.api.errors import PROBLEM_JSON, error_body, is_problem_path, problem_body
from mlx_manager.api.http_middleware import HttpMiddleware
from mlx_manager.api.ollama.errors import is_ollama_path, ollama_error_body

log = logging.getLogger(__name__)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.match(incoming) else f"req-{uuid.uuid4().hex}"
        scope.setdefault("state", {})["request_id"] = request_id
        id_headers = [(b"x-request-id", request_id.encode())]
        if is_anthropic_path(scope["path"]):  # Anthropic's own header, which its SDK reads (`err.request_id`)
            id_headers.append((b"request-id", request_id.encode()))
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *id_headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("Unhandled error on %s %s (request %s)", scope["method"], scope["path"], request_id)
            if started:
                raise
            message = f"Internal server error (request id {request_id})."
            content_type = b"application/json"
            if is_problem_path(scope["path"]):
                shaped = problem_body(500, message, scope["path"], "internal", request_id=request_id)
                content_type = PROBLEM_JSON.encode()
            elif is_anthropic_path(scope["path"]):
                shaped = anthropic_error_body(500, message, request_id)
            elif is_ollama_path(scope["path"]):
                shaped = ollama_error_body(message)
            else:
                shaped = error_body(message, "server_error", None, "internal", request_id)
            body = json.dumps(shaped).encode()
            await send_with_id(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", content_type),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send_with_id({"type": "http.response.body", "body": body})
