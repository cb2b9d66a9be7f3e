"""One log line and the HTTP metrics per request: id, model, tokens, latency, status."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlx_manager.api.http_middleware import HttpMiddleware
from mlx_manager.engine.types import Usage
from mlx_manager.observability.metrics import Metrics

log = logging.getLogger("mlx_manager.access")


def record(request: Request, model: str, usage: Usage | None = None, backend: str | None = None) -> None:
    """Name the model (and the usage object the engine fills in, and who served it) for this request's line."""
    request.state.model = model
    if usage is not None:
        request.state.usage = usage
    if backend is not None:
        request.state.backend = backend


class AccessMiddleware(HttpMiddleware):
    def __init__(
        self, app: ASGIApp, metrics: Metrics, on_request: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """`on_request` gets each request's fields (the access line's, plus endpoint, time, user and key ids):
        the audit log. It must not block; what it raises is logged, never seen by the client."""
        super().__init__(app)
        self.metrics = metrics
        self.on_request = on_request

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            self._done(scope, status, time.perf_counter() - start)

    def _done(self, scope: Scope, status: int, seconds: float) -> None:
        state: dict[str, Any] = scope.get("state", {})
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        model = str(state.get("model", ""))
        usage: Usage | None = state.get("usage")
        if endpoint not in ("/metrics", "/health"):
            self.metrics.requests.labels(endpoint, model, str(status)).inc()
            self.metrics.request_seconds.labels(endpoint, model).observe(seconds)
        fields = {
            "request_id": state.get("request_id", ""),
            "method": scope.get("method", ""),
            "path": scope.get("path", ""),
            "status": status,
            "model": model,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "latency_ms": round(seconds * 1000, 1),
            "backend": str(state.get("backend", "local")),
        }
        level = logging.WARNING if status >= 500 else logging.INFO
        log.log(
            level,
            "%s %s %d %s %.1fms tokens=%d/%d id=%s",
            fields["method"], fields["path"], status, model or "-", fields["latency_ms"],
            fields["prompt_tokens"], fields["completion_tokens"], fields["request_id"],
            extra=fields,
        )  # fmt: skip
        if self.on_request is not None:
            try:
                self.on_request(
                    {
                        **fields,
                        "endpoint": endpoint if route is not None else fields["path"],
                        "time": time.time() - seconds,
                        "user_id": state.get("user_id"),
                        "api_key_id": state.get("api_key_id"),
                    }
                )
            except Exception:
                log.exception("The request hook failed for %s", fields["request_id"])
