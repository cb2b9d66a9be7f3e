"""Graceful shutdown: on SIGTERM/SIGINT stop taking requests (503 + Retry-After), let in-flight ones finish up to
a drain timeout, then end what is left with a final chunk, so no client is left hanging. A second signal exits now."""

from __future__ import annotations

import asyncio
import logging
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mlx_manager.api.errors import APIError, error_response

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


class DrainMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not getattr(scope["app"].state, "draining", False):
            await self.app(scope, receive, send)
            return
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        request = Request(scope)
        if scope["path"] == "/health":  # load balancers: take this instance out now
            response = JSONResponse({"status": "draining"}, 503, headers=headers)
        else:
            message = "The server is shutting down; retry shortly (or on another instance)."
            response = error_response(
                request, APIError(503, message, type="server_error", code="shutting_down", headers=headers)
            )
        await response(scope, receive, send)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_seconds: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_seconds = drain_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.app.state.draining or self._loop is None or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self.app.state.draining = True
        self._captured_signals.append(sig)
        log.info(
            "Shutting down: draining in-flight requests for up to %.0fs (signal again to stop now)", self.drain_seconds
        )
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        assert self._loop is not None
        self._drain_task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        engine = self.app.state.engine
        deadline = time.monotonic() + self.drain_seconds
        while engine.active_requests() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ended = engine.abort_all()
        if ended:
            log.warning("Drain timeout: ended %d generation(s) early with finish_reason 'length'", ended)
        settle = time.monotonic() + 5  # their final chunks still have to reach the clients
        while engine.active_requests() and time.monotonic() < settle:
            await asyncio.sleep(0.05)
        self.should_exit = True
