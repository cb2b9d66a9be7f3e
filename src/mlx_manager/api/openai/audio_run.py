"""A transcription for one request: the audio time limit, a client that leaves stops the work on the model's
thread, and the stream of OpenAI's transcript.text.delta / transcript.text.done events. No MLX here."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from mlx_manager.api.errors import APIError, error_body
from mlx_manager.api.request.limits import OnLimit
from mlx_manager.api.request.streaming import sse, stream_failure
from mlx_manager.engine.audio.types import Job, Transcript

log = logging.getLogger(__name__)
Work = Callable[[Job], Awaitable[Transcript]]
POLL_SECONDS = 0.25


class ClientGone(Exception):
    """The client closed the connection; the transcription was stopped."""


def _expired_error(limit: float) -> APIError:
    return APIError(
        504,
        f"The transcription ran past the audio time limit ({limit:.0f}s, audio_timeout_seconds).",
        type="server_error",
        code="timeout",
    )


async def _stop(task: asyncio.Future[Transcript], job: Job, reason: str) -> None:
    job.stop(reason)  # before the cancel, so the engine's log and count name the reason
    task.cancel()
    await asyncio.wait({task})


async def _watch(
    request: Request,
    task: asyncio.Future[Transcript],
    job: Job,
    limit: float,
    on_limit: OnLimit | None,
    until: asyncio.Future[None],
) -> None:
    """Returns when the task is done or `until` is; stops the task when the client leaves (ClientGone) or past
    `limit` seconds (0: none) from now (a 504, counted through on_limit)."""
    deadline = _deadline(limit)
    while not task.done() and not until.done():
        waits: set[asyncio.Future[Any]] = {task, until}
        await asyncio.wait(waits, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if task.done() or until.done():
            return
        if await request.is_disconnected():
            await _stop(task, job, "cancelled")
            raise ClientGone
        if deadline is not None and time.monotonic() > deadline:
            await _stop(task, job, "expired")
            if on_limit is not None:
                on_limit("audio", "generation")
            raise _expired_error(limit)


def _deadline(limit: float) -> float | None:
    return time.monotonic() + limit if limit > 0 else None


async def whole(request: Request, work: Work, limit: float, on_limit: OnLimit | None) -> Transcript | None:
    """The transcript, or None when the client left; past `limit` seconds (0: none) a 504."""
    job = Job()
    task = asyncio.ensure_future(work(job))
    try:
        await _watch(request, task, job, limit, on_limit, asyncio.get_running_loop().create_future())
    except ClientGone:
        return None
    return task.result()


def usage(transcript: Transcript) -> dict[str, Any]:
    """Token usage as OpenAI's streamed transcriptions report it: the encoder's positions (50 per second of
    audio) in, the decoder's tokens (timestamps included) out."""
    audio_tokens = math.ceil(transcript.duration * 50)
    out = sum(len(s.tokens) for s in transcript.segments)
    return {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": out,
        "total_tokens": audio_tokens + out,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
    }


async def stream(request: Request, work: Work, limit: float, on_limit: OnLimit | None) -> EventSourceResponse | None:
    """Errors before the model starts (bad audio, unknown model, queue timeout) are still plain HTTP errors; then
    each window's final text is a delta event as it is decoded, and the whole text closes the stream."""
    loop = asyncio.get_running_loop()
    texts: asyncio.Queue[str] = asyncio.Queue()
    started: asyncio.Future[None] = loop.create_future()

    def on_text(text: str) -> None:  # on the model's thread
        loop.call_soon_threadsafe(texts.put_nowait, text)

    def on_start() -> None:
        if not started.done():
            started.set_result(None)

    job = Job(on_text=on_text, on_start=on_start)
    task = asyncio.ensure_future(work(job))
    deadline = _deadline(limit)
    try:
        await _watch(request, task, job, limit, on_limit, started)
    except ClientGone:
        return None
    if task.done():
        task.result()  # raises what stopped it before it started
    response = sse(_events(task, job, texts, deadline, limit, on_limit), TranscriptStream)
    assert isinstance(response, TranscriptStream)
    response.job, response.task = job, task
    return response


class TranscriptStream(EventSourceResponse):
    """However the response ends (done, failed, or the client gone before its first byte, when the event generator
    never starts), a transcription still running is stopped and lets go of the model's turn."""

    job: Job | None = None
    task: asyncio.Future[Transcript] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.job is not None and self.task is not None and not self.task.done():
                self.job.stop("cancelled")
                self.task.cancel()


async def _events(
    task: asyncio.Future[Transcript],
    job: Job,
    texts: asyncio.Queue[str],
    deadline: float | None,
    limit: float,
    on_limit: OnLimit | None,
) -> AsyncIterator[str]:
    first = True
    try:
        while True:
            getter = asyncio.ensure_future(texts.get())
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
            waits: set[asyncio.Future[Any]] = {getter, task}
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                if not task.done():  # the deadline passed
                    await _stop(task, job, "expired")
                    if on_limit is not None:
                        on_limit("audio", "generation")
                    expired = _expired_error(limit)
                    yield json.dumps(error_body(expired.message, expired.type, expired.param, expired.code))
                    return
                if texts.empty():
                    break
                continue
            text = getter.result()
            delta = text.lstrip() if first else text
            if delta:
                first = False
                yield json.dumps({"type": "transcript.text.delta", "delta": delta})
        transcript = task.result()
    except asyncio.CancelledError:  # the client left mid-stream
        await _stop(task, job, "cancelled")
        raise
    except Exception as exc:
        err = stream_failure(exc)
        message, kind = (err.message, err.type) if err is not None else ("Transcription failed.", "server_error")
        yield json.dumps(error_body(message, kind, err.param if err else None, err.code if err else None))
        return
    done = {"type": "transcript.text.done", "text": transcript.text, "usage": usage(transcript)}
    yield json.dumps(done)
