"""The audio responses (speech out, streamed transcriptions) let go of the model however they end, even when the
body never starts (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from mlx_manager.api.openai.audio_run import TranscriptStream
from mlx_manager.api.openai.speech import _AudioStream, _EventStream
from mlx_manager.api.request.streaming import sse
from mlx_manager.engine.audio.types import Job, Transcript


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


def test_a_client_gone_before_the_first_byte_stops_the_transcription() -> None:
    job = Job()

    async def run() -> asyncio.Future[Transcript]:
        task: asyncio.Future[Transcript] = asyncio.ensure_future(asyncio.sleep(3600))  # type: ignore[arg-type]
        response = sse(never_started(), TranscriptStream)
        assert isinstance(response, TranscriptStream)
        response.job, response.task = job, task
        with pytest.raises((ClientDisconnect, OSError)):  # Starlette's, or sse-starlette's the OSError itself
            await response(SCOPE, receive, gone)
        await asyncio.sleep(0)
        return task

    task = asyncio.run(run())
    assert job.stopped and job.reason == "cancelled" and task.cancelled()
