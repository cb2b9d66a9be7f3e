"""OpenAI's text to speech: POST /v1/audio/speech (JSON in; a whole audio file, raw audio streamed as it is made, or
server-sent events with base64 pieces). No MLX here."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from mlx_manager.api.access import record
from mlx_manager.api.errors import APIError, error_body
from mlx_manager.api.int64 import Int64
from mlx_manager.api.replies import until_done
from mlx_manager.api.request.limits import OnLimit
from mlx_manager.api.request.start import PRIORITY_FLOOR
from mlx_manager.api.request.streaming import sse, stream_failure
from mlx_manager.api.schema_base import NullsAsAbsent, Strict
from mlx_manager.engine.audio.encode import ENCODED, MEDIA_TYPES, StreamEncoder, encode
from mlx_manager.engine.audio.speak import SpeakOptions, Speech

router = APIRouter(prefix="/v1/audio", tags=["openai"])
log = logging.getLogger(__name__)


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
    priority: Int64 = Field(default=0, description="Scheduling priority (vLLM extension): lower runs sooner.")

    def voice_name(self) -> str:
        return self.voice if isinstance(self.voice, str) else self.voice.id


@router.post(
    "/speech",
    response_class=Response,
    responses={200: {"content": {MEDIA_TYPES[f]: {} for f in ENCODED} | {"text/event-stream": {}}}},
)
async def speech(body: SpeechRequest, request: Request) -> Response:
    """Text to speech. Without `stream_format` the reply is the whole file; `audio` streams it as it is made (about
    a second of speech a piece); `sse` sends `speech.audio.delta` events (base64), then `speech.audio.done` (usage)."""
    record(request, body.model)
    if body.response_format not in ENCODED:
        raise APIError(
            400,
            f"response_format '{body.response_format}' has no encoder on this server; use one of {', '.join(ENCODED)}.",
            param="response_format",
        )
    settings = request.app.state.settings
    priority = max(body.priority, PRIORITY_FLOOR.get())
    options = SpeakOptions(body.voice_name(), body.speed, settings.max_speech_chars, priority)
    spoken = await request.app.state.engine.speak(body.model, body.input, options)
    starter = request.app.state.openai_serving.starter
    # Waiting for the model's first turn is still a plain 503; the time limit runs from there.
    await spoken.start(starter.time_limits().queue, settings.audio_timeout_seconds)
    limit = _Limit(settings.audio_timeout_seconds, starter.on_limit)
    media = MEDIA_TYPES[body.response_format]
    if body.stream_format == "sse":
        events = sse(_events(spoken, body.response_format, limit), _EventStream)
        assert isinstance(events, _EventStream)
        events.spoken = spoken
        return events
    if body.stream_format == "audio":
        return _AudioStream(spoken, _raw(spoken, body.response_format, limit), media_type=media)
    audio = await _whole(spoken, body.response_format, request)
    if spoken.expired:
        raise limit.error()
    return Response(audio, media_type=media)


class _ClosesSpeech:
    """However the response ends (done, failed, or the client gone before its first byte, when the body never
    starts), the speech lets go of the model's turn and the pool's hold."""

    spoken: Speech | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)  # type: ignore[misc]
        finally:
            if self.spoken is not None:
                self.spoken.close()


class _AudioStream(_ClosesSpeech, StreamingResponse):
    def __init__(self, spoken: Speech, content: AsyncIterator[bytes], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.spoken = spoken


class _EventStream(_ClosesSpeech, EventSourceResponse):
    pass


@dataclass
class _Limit:
    seconds: float
    on_limit: OnLimit | None

    def error(self) -> APIError:
        """Counted on /metrics as the transcriptions' limit is."""
        if self.on_limit is not None:
            self.on_limit("audio", "generation")
        return APIError(
            504,
            f"The speech ran past the audio time limit ({self.seconds:.0f}s, audio_timeout_seconds).",
            type="server_error",
            code="timeout",
        )


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
    """The encoded stream as it is made; a client that leaves cancels this, which stops the model."""
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


async def _raw(spoken: Speech, response_format: str, limit: _Limit) -> AsyncIterator[bytes]:
    """A raw stream cut by the time limit just ends (the file so far is valid); the log says why."""
    async for piece in _pieces(spoken, response_format):
        yield piece
    if spoken.expired:
        log.warning("Speech stopped at the time limit: %s", limit.error().message)


def _event(kind: str, data: dict[str, object]) -> dict[str, str]:
    return {"event": kind, "data": json.dumps({"type": kind, **data})}


async def _events(spoken: Speech, response_format: str, limit: _Limit) -> AsyncIterator[dict[str, str]]:
    try:
        async for piece in _pieces(spoken, response_format):
            yield _event("speech.audio.delta", {"audio": base64.b64encode(piece).decode()})
    except Exception as exc:  # after the 200: an error event, as the other streams end
        err = stream_failure(exc)
        message, kind = (err.message, err.type) if err is not None else ("Speech failed.", "server_error")
        yield {"event": "error", "data": json.dumps(error_body(message, kind, None, err.code if err else None))}
        return
    if spoken.expired:
        expired = limit.error()
        yield {"event": "error", "data": json.dumps(error_body(expired.message, expired.type, None, expired.code))}
        return
    usage = {"input_tokens": spoken.input_tokens, "output_tokens": spoken.output_tokens,
             "total_tokens": spoken.input_tokens + spoken.output_tokens}  # fmt: skip
    yield _event("speech.audio.done", {"usage": usage})
