"""OpenAI's text to speech: POST /v1/audio/speech (JSON in; a whole audio file, raw audio streamed as it is made, or
server-sent events with base64 pieces). No MLX here."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from mlx_manager.api.access import record
from mlx_manager.api.errors import APIError
from mlx_manager.api.replies import until_done
from mlx_manager.api.schema_base import NullsAsAbsent, Strict
from mlx_manager.engine.audio.encode import ENCODED, MEDIA_TYPES, StreamEncoder, encode
from mlx_manager.engine.audio.speak import SpeakOptions, Speech

router = APIRouter(prefix="/v1/audio", tags=["openai"])


class VoiceID(Strict):
    id: str


class SpeechRequest(NullsAsAbsent):
    model: str = Field(min_length=1)
    input: str
    voice: str | VoiceID
    instructions: str | None = None  # accepted, not used: the models here have no style control
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    stream_format: Literal["sse", "audio"] | None = None

    def voice_name(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id


@router.post(
    "/speech",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPES[f]: {} for f in ENCODED} | {"text/event-stream": {}}}},
)
async def speech(body: SpeechRequest, request: Request) -> Response:
    """Text to speech. Without `stream_format` the reply is the whole file; `audio` streams it sentence by sentence
    as it is made; `sse` sends `speech.audio.delta` events (base64) and a final `speech.audio.done` with usage."""
    record(request, body.model)
    if body.response_format not in ENCODED:
        raise APIError(
            400,
            f"response_format '{body.response_format}' has no encoder on this server; use one of {', '.join(ENCODED)}.",
            param="response_format",
        )
    settings = request.app.state.settings
    options = SpeakOptions(voice=body.voice_name(), speed=body.speed, max_chars=settings.max_speech_chars)
    spoken = await request.app.state.engine.speak(body.model, body.input, options)
    media = MEDIA_TYPES[body.response_format]
    if body.stream_format == "sse":
        return StreamingResponse(_events(spoken, body.response_format), media_type="text/event-stream")
    if body.stream_format == "audio":
        return StreamingResponse(_pieces(spoken, body.response_format), media_type=media)
    return Response(await _whole(spoken, body.response_format, request), media_type=media)


async def _whole(spoken: Speech, response_format: str, request: Request) -> bytes:
    import numpy as np

    parts: list[np.ndarray] = []

    async def consume() -> None:
        async for chunk in spoken.chunks():
            parts.append(chunk)

    try:
        await until_done(consume(), spoken.cancel, request.is_disconnected)
    finally:
        spoken.close()
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return encode(samples, spoken.sample_rate, response_format)


async def _pieces(spoken: Speech, response_format: str) -> AsyncIterator[bytes]:
    """The encoded stream, a piece per sentence; a client that leaves cancels this, which stops the model."""
    encoder = StreamEncoder(response_format, spoken.sample_rate)
    try:
        async for chunk in spoken.chunks():
            piece = encoder.feed(chunk)
            if piece:
                yield piece
        if tail := encoder.finish():
            yield tail
    finally:
        spoken.close()


def _event(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


async def _events(spoken: Speech, response_format: str) -> AsyncIterator[bytes]:
    async for piece in _pieces(spoken, response_format):
        yield _event("speech.audio.delta", {"audio": base64.b64encode(piece).decode()})
    usage = {"input_tokens": spoken.input_tokens, "output_tokens": spoken.output_tokens,
             "total_tokens": spoken.input_tokens + spoken.output_tokens}  # fmt: skip
    yield _event("speech.audio.done", {"usage": usage})
