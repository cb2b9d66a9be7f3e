"""Read a server-sent event stream as (event name, JSON data) pairs: OpenAI's `data:` lines and Anthropic's
`event:` + `data:` pairs alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from mlx_manager.sse import aiter_json

_UNNAMED = "message"  # the SSE spec's name for an event no `event:` line named


async def sse_events(resp: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield each event's name (the data's `type` when no `event:` line came) and parsed data; stop at [DONE]."""
    async for name, event in aiter_json(resp):
        if isinstance(event, dict):
            yield (name if name != _UNNAMED else "") or str(event.get("type") or ""), event
