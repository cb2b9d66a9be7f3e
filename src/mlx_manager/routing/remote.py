"""A generation served by another server: a Generation like a local one (chunks, usage, cancel, callbacks), so
every API's serving code answers from it unchanged and protocols translate both ways through one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx

from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk


class RemoteError(Exception):
    """The backend failed before any output: `status` None means no answer at all (refused, reset, timed out)."""

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
                self._receive([GenerationChunk(0, "", [], finish_reason="cancelled")], None)
            raise
        except Exception as exc:  # delivered to whoever iterates, as a local failure would be
            self._receive([], exc)

    def cancel(self) -> None:
        super().cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


async def send_checked(client: httpx.AsyncClient, backend: str, request: httpx.Request) -> httpx.Response:
    """The streaming response once the status is 200; anything else raises RemoteError (the caller may fall back).
    The message names the URL tried, so a wrong base URL or upstream model name shows in the client's error."""
    url = f"{request.method} {request.url}"
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise RemoteError(backend, None, f"no answer from {url}: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        text = (await response.aread()).decode(errors="replace")[:500]
        await response.aclose()
        hint = " (check the backend's base URL and the upstream model name)" if response.status_code == 404 else ""
        raise RemoteError(backend, response.status_code, f"{response.status_code} from {url}{hint}: {text}")
    return response


def image_url(urls: Iterator[str]) -> str:
    """The next image of the prompt as a data: URL; api/images.py attach_images keeps them with the prompt."""
    url = next(urls, None)
    if url is None:
        raise ValueError("An image part has no image data to send to the backend.")
    return url
