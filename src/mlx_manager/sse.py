"""Reading server-sent event streams, with httpx-sse's parser (the SSE spec: multi-line `data:`, comments, CR/LF
line ends, `event:` names). Every SSE client of this project (routing, bench, test helpers) reads through here."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import EventSource, ServerSentEvent

DONE = "[DONE]"  # OpenAI's end-of-stream marker, a data line that is not JSON


class _AnyContentType(EventSource):
    # Read the body whatever its Content-Type says, as these clients always have: some servers mislabel streams.
    def _check_content_type(self) -> None:
        return None


def aiter_events(response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
    """Each complete event of a streaming response (`event` is "message" when no `event:` line named it)."""
    return _AnyContentType(response).aiter_sse()


def iter_events(response: httpx.Response) -> Iterator[ServerSentEvent]:
    """As aiter_events, for a synchronous response."""
    return _AnyContentType(response).iter_sse()


async def aiter_json(response: httpx.Response) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) of each event that carries data, until OpenAI's [DONE]."""
    async for sse in aiter_events(response):
        if (data := json_data(sse)) is END:
            return
        if data is not None:
            yield sse.event, data


def iter_json(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """As aiter_json, for a synchronous response."""
    for sse in iter_events(response):
        if (data := json_data(sse)) is END:
            return
        if data is not None:
            yield sse.event, data


END: Any = object()  # what json_data gives for OpenAI's [DONE]


def json_data(sse: ServerSentEvent) -> Any:
    """The event's data, parsed; None when it has none (an `event:` line alone), END for [DONE]."""
    data = sse.data
    if not data:
        return None
    if len(data) < 16 and data.strip() == DONE:
        return END
    return json.loads(data)
