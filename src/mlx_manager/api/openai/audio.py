"""OpenAI's audio routes: /v1/audio/transcriptions and /v1/audio/translations (multipart form). No MLX here."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from mlx_manager.api.access import record
from mlx_manager.api.errors import APIError
from mlx_manager.api.int64 import INT64_MAX, INT64_MIN
from mlx_manager.api.openai import audio_run
from mlx_manager.api.request.start import PRIORITY_FLOOR
from mlx_manager.engine.audio.types import Job, Task, TranscribeOptions, Transcript

router = APIRouter(prefix="/v1/audio", tags=["openai"])
# The form is read by hand (limits, unknown fields); this documents it.
_FORM_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "model"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "model": {"type": "string"},
                        "language": {"type": "string"},
                        "prompt": {"type": "string"},
                        "response_format": {"type": "string", "enum": ["json", "text", "srt", "vtt", "verbose_json"]},
                        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
                        "timestamp_granularities[]": {"type": "array", "items": {"enum": ["segment", "word"]}},
                        "stream": {"type": "boolean", "description": "transcriptions only: SSE events by window"},
                        "priority": {"type": "integer", "description": "extension: lower runs sooner (as vLLM)"},
                    },
                }
            }
        },
    }
}

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
# Form fields the routes read; the SDKs send a list field as "name[]".
_FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities",
           "timestamp_granularities[]", "stream", "priority"}  # fmt: skip
STREAM_FORMATS = ("json", "text")
_FORM_LIMITS = {"max_files": 1, "max_fields": 32, "max_part_size": 1 << 20}


def _bad(message: str, param: str) -> APIError:
    return APIError(400, message, param=param)


def _text_field(form: Any, name: str, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value == "":
        if required:
            raise _bad(f"'{name}' is required.", name)
        return None
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be a text field.", name)
    return value


def _temperature(form: Any) -> float:
    raw = _text_field(form, "temperature")
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError as exc:
        raise _bad(f"temperature must be a number, got '{raw[:20]}'.", "temperature") from exc
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise _bad(f"temperature must be between 0 and 1, got {raw[:20]}.", "temperature")
    return value


def _priority(form: Any) -> int:
    raw = _text_field(form, "priority")
    try:
        value = int(raw) if raw is not None else 0
    except ValueError as exc:
        raise _bad(f"priority must be an integer, got '{raw[:20] if raw else raw}'.", "priority") from exc
    if not INT64_MIN <= value <= INT64_MAX:
        raise _bad("priority must fit in a signed 64-bit integer.", "priority")
    return max(value, PRIORITY_FLOOR.get())


def _stream(form: Any, task: Task, response_format: str) -> bool:
    raw = (_text_field(form, "stream") or "false").lower()
    if raw not in ("true", "1", "false", "0"):
        raise _bad("stream must be true or false.", "stream")
    stream = raw in ("true", "1")
    if stream and task == "translate":  # as OpenAI: its translations endpoint takes no stream
        raise _bad("stream is not supported on /v1/audio/translations; send the request without it.", "stream")
    if stream and response_format not in STREAM_FORMATS:
        raise _bad(f"stream takes response_format json or text, not {response_format}.", "stream")
    return stream


async def _upload(request: Request, form: Any) -> bytes:
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise _bad("'file' is required: the audio file, sent as a multipart file field.", "file")
    limit: int = request.app.state.settings.max_audio_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise APIError(413, f"The audio file is larger than {limit} bytes (max_audio_bytes).", param="file")
    return data


async def _transcribe(request: Request, task: Task) -> Response:
    try:
        form = await request.form(**_FORM_LIMITS)
    except Exception as exc:  # Starlette raises its own kinds for a malformed or oversized form
        raise _bad(f"The body must be a multipart form with the audio in 'file': {exc}", "file") from exc
    unknown = sorted(set(form.keys()) - _FIELDS)
    if unknown:
        raise _bad(f"Unsupported parameter '{unknown[0][:50]}'.", unknown[0][:50])
    model = _text_field(form, "model", required=True)
    assert model is not None
    record(request, model)
    response_format = _text_field(form, "response_format") or "json"
    if response_format not in FORMATS:
        raise _bad(f"response_format must be one of {', '.join(FORMATS)}.", "response_format")
    granularities = [
        str(g) for g in form.getlist("timestamp_granularities[]") + form.getlist("timestamp_granularities")
    ]
    if any(g not in GRANULARITIES for g in granularities):
        raise _bad("timestamp_granularities takes 'segment' and 'word'.", "timestamp_granularities")
    if granularities and response_format != "verbose_json":
        raise _bad("timestamp_granularities needs response_format verbose_json.", "timestamp_granularities")
    stream = _stream(form, task, response_format)
    priority = _priority(form)
    language = _text_field(form, "language")
    if task == "translate" and language is not None:
        raise _bad("Translations take no language: the audio's is detected and the text is English.", "language")
    options = TranscribeOptions(
        task=task,
        language=language.strip().lower() if language else None,
        prompt=_text_field(form, "prompt"),
        temperature=_temperature(form),
        words="word" in granularities,
    )
    data = await _upload(request, form)
    settings = request.app.state.settings
    starter = request.app.state.openai_serving.starter
    limits = starter.time_limits()

    def work(job: Job) -> Any:
        return request.app.state.engine.transcribe(
            model, data, options, settings.max_audio_seconds, job=job, priority=priority, queue_seconds=limits.queue
        )

    limit = settings.audio_timeout_seconds
    if stream:
        events = await audio_run.stream(request, work, limit, starter.on_limit)
        return events if events is not None else Response(status_code=499)  # the client is gone
    transcript = await audio_run.whole(request, work, limit, starter.on_limit)
    if transcript is None:
        return Response(status_code=499)
    return render(transcript, response_format, task, granularities)


def _clock(seconds: float, separator: str) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def subtitles(transcript: Transcript, kind: str) -> str:
    """SRT (numbered cues, comma before milliseconds) or WebVTT (a header, dot before milliseconds)."""
    cues = [s for s in transcript.segments if s.text.strip()]
    if kind == "srt":
        return "".join(
            f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n\n" for i, s in enumerate(cues, 1)
        )
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n\n" for s in cues
    )


def render(transcript: Transcript, response_format: str, task: Task, granularities: list[str]) -> Response:
    usage = {"type": "duration", "seconds": math.ceil(transcript.duration)}
    if response_format == "text":
        return PlainTextResponse(transcript.text + "\n")
    if response_format in ("srt", "vtt"):
        media = "text/plain" if response_format == "srt" else "text/vtt"
        return PlainTextResponse(subtitles(transcript, response_format), media_type=media)
    if response_format == "json":
        return JSONResponse({"text": transcript.text, "usage": usage})
    body: dict[str, Any] = {
        "task": task,
        "language": transcript.language_name,
        "duration": round(transcript.duration, 3),
        "text": transcript.text,
        "usage": usage,
    }
    if not granularities or "segment" in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in transcript.segments
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for w in transcript.words]
    return JSONResponse(body)


@router.post("/transcriptions", response_model=None, openapi_extra=_FORM_DOC)
async def transcriptions(request: Request) -> Response:
    """Speech to text in the audio's language (multipart: file, model, language, prompt, response_format...)."""
    return await _transcribe(request, "transcribe")


@router.post("/translations", response_model=None, openapi_extra=_FORM_DOC)
async def translations(request: Request) -> Response:
    """Speech in any language Whisper knows to English text."""
    return await _transcribe(request, "translate")
