"""Read a server-sent event stream as (event name, JSON data) pairs: OpenAI's `data:` lines and Anthropic's
`event:` + `data:` pairs alike."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


async def sse_events(resp: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield each event's name (the data's `type` when no `event:` line came) and parsed data; stop at [DONE]."""
    name = ""
    async for line in resp.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
            continue
        if not line.startswith("data:"):
            if not line:
                name = ""  # a blank line ends the event
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if isinstance(event, dict):
            yield name or str(event.get("type") or ""), event
