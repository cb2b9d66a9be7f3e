"""The speech responses let go of the model however they end, even when the body never starts (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from mlx_manager.api.openai.speech import _AudioStream, _EventStream
from mlx_manager.api.request.streaming import sse


class FakeSpeech:
    closed = 0

    def close(self) -> None:
        self.closed += 1


async def never_started() -> AsyncIterator[bytes]:
    raise AssertionError("the body was not to be read")
    yield b""  # pragma: no cover


async def gone(message: dict[str, Any]) -> None:
    raise OSError("the client left before the first byte")


async def receive() -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


SCOPE = {"type": "http", "method": "POST", "asgi": {"spec_version": "2.4"}, "headers": []}


@pytest.mark.parametrize("kind", ["audio", "sse"])
def test_a_client_gone_before_the_first_byte_still_frees_the_model(kind: str) -> None:
    spoken = FakeSpeech()
    if kind == "audio":
        response: Any = _AudioStream(spoken, never_started(), "audio/wav")
    else:
        response = sse(never_started(), _EventStream)
        response.spoken = spoken
    with pytest.raises((ClientDisconnect, OSError)):  # Starlette's, or sse-starlette's the OSError itself
        asyncio.run(response(SCOPE, receive, gone))
    assert spoken.closed == 1
