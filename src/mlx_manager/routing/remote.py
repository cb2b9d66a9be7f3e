"""A generation served by another server: a Generation like a local one (chunks, usage, cancel, callbacks), so
every API's serving code answers from it unchanged and protocols translate both ways through one request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator

import httpx

from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk
from mlx_manager.routing.redact import public_url, redact, sensitive_values, upstream_message

log = logging.getLogger(__name__)
_LOGGED_BODY_BYTES = 16 << 10
StreamReader = Callable[[httpx.Response, "RemoteGeneration"], AsyncIterator[GenerationChunk]]


class RemoteError(Exception):
    """The backend failed before any output: `status` None means no answer at all (refused, reset, timed out).
    `message` reaches the caller, so it never holds the backend's raw body (routing/redact.py)."""

    def __init__(self, backend: str, status: int | None, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.status = status
        self.message = message


class RemoteGeneration(Generation):
    """One sequence streamed from `backend`; `cancel()` also closes the upstream stream."""

    def __init__(self, backend: str, model: str) -> None:
        super().__init__(prompt_tokens=0, n=1, model=model)
        self.backend = backend
        self._task: asyncio.Task[None] | None = None
        self._admitted.set()  # the backend answered 200: nothing of it waits in this server's queue

    def start(self, source: AsyncIterator[GenerationChunk]) -> None:
        self._task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterator[GenerationChunk]) -> None:
        try:
            async for chunk in source:
                self._receive([chunk], None)
            if not self.done:  # the upstream ended without saying why
                self._receive([GenerationChunk(0, "", [], finish_reason="stop")], None)
        except asyncio.CancelledError:
            if not self.done:
                ended = GenerationChunk(0, "", [], finish_reason="aborted" if self.aborted else "cancelled")
                self._receive([ended], None)
            raise
        except Exception as exc:  # delivered to whoever iterates, as a local failure would be
            self._receive([], exc)

    def abort(self) -> None:
        """A time limit or shutdown: close the upstream stream; the reply ends with "aborted"."""
        super().abort()
        self.cancel()

    def cancel(self) -> None:
        super().cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def send_checked(client: httpx.AsyncClient, backend: str, request: httpx.Request) -> httpx.Response:
    """The streaming response once the status is 200; anything else raises RemoteError (the caller may fall back).
    The message names the URL tried, so a wrong base URL or upstream model name shows in the client's error; the
    backend's body goes to the log, and only its error message, redacted, to the caller."""
    url = f"{request.method} {public_url(request.url)}"
    secrets = sensitive_values(request)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        reason = redact(str(exc), secrets)[:200]
        raise RemoteError(backend, None, f"no answer from {url}: {type(exc).__name__}: {reason}") from exc
    if response.status_code != 200:
        status = response.status_code
        body = b""
        async for part in response.aiter_bytes():
            body += part
            if len(body) >= _LOGGED_BODY_BYTES:
                break
        await response.aclose()
        text = redact(body[:_LOGGED_BODY_BYTES].decode(errors="replace"), secrets)
        log.warning("Backend %s answered %d to %s: %s", backend, status, url, text)
        hint = " (check the backend's base URL and the upstream model name)" if status == 404 else ""
        said = upstream_message(body, request)
        raise RemoteError(backend, status, f"{status} from {url}{hint}" + (f": {said}" if said else ""))
    return response


async def open_stream(
    client: httpx.AsyncClient, backend: str, request: httpx.Request, model: str, read: StreamReader
) -> RemoteGeneration:
    """Send the request and wait for the status (a failure raises RemoteError: the caller may fall back), then
    stream the body into a generation through `read`, the protocol's SSE reader."""
    response = await send_checked(client, backend, request)
    gen = RemoteGeneration(backend, model)
    gen.start(read(response, gen))
    return gen


def stream_error(backend: str, error: object) -> RemoteError:
    """An error event inside the backend's stream; the server log gets it (redacted), the caller a summary."""
    text = redact(str(error), [])
    log.warning("Backend %s sent an error mid-stream: %s", backend, text[:_LOGGED_BODY_BYTES])
    return RemoteError(backend, None, "the backend reported an error mid-stream (see the server log)")


def image_url(urls: Iterator[str]) -> str:
    """The next image of the prompt as a data: URL; api/images.py attach_images keeps them with the prompt."""
    url = next(urls, None)
    if url is None:
        raise ValueError("An image part has no image data to send to the backend.")
    return url
