"""Read a server-sent event stream as (event name, JSON data) pairs: OpenAI's `data:` lines and Anthropic's
`event:` + `data:` pairs alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from mlx_manager.sse import END, aiter_events, json_data

_UNNAMED = "message"  # the SSE spec's name for an event no `event:` line named


class StatusError(Exception):
    """The server answered another status than 200; the message holds the status and the body's start."""


# What a failed request reports: post_events' status line as it is, anything else as its repr.
FAILURES = (StatusError, httpx.HTTPError, ValueError)


def failure(exc: Exception) -> str:
    return str(exc) if isinstance(exc, StatusError) else repr(exc)


async def sse_events(resp: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield each event's name (the data's `type` when no `event:` line came) and parsed data; stop at [DONE]."""
    async for sse in aiter_events(resp):  # read in place: the reader's cost adds to every token's measured time
        if (event := json_data(sse)) is END:
            return
        if isinstance(event, dict):
            yield (sse.event if sse.event != _UNNAMED else "") or str(event.get("type") or ""), event


async def post_events(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], headers: dict[str, str], shown: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """POST a streaming request and read its events; a status other than 200 raises StatusError (with `shown`
    bytes of the body)."""
    async with client.stream("POST", url, json=body, headers=headers) as resp:
        if resp.status_code != 200:
            raise StatusError(f"HTTP {resp.status_code}: {(await resp.aread())[:shown]!r}")
        async for item in sse_events(resp):
            yield item
