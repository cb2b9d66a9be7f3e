"""Audio in chat requests (OpenAI's `input_audio` content parts): base64 WAV / MP3 to 16 kHz samples, for models
that hear (a Gemma 4 with its audio tower, run by mlx-vlm).

The translator puts {"type": "audio", "ref": AudioRef} where the part appears; `attach_audio` checks that the
model hears (a 400 naming the part before anything is decoded or loaded: a model that cannot hear, or one a routing
rule sends elsewhere), decodes with engine/audio/decode (any format the transcription route takes, within
max_audio_bytes and max_audio_seconds), and hands the engine plain {"type": "audio"} parts with the samples in
the same order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mlx_manager.api.errors import APIError
from mlx_manager.config import default
from mlx_manager.engine.audio.decode import decode_audio
from mlx_manager.engine.backend import Backend
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.types import ChatPrompt, Prompt


@dataclass(frozen=True)
class AudioLimits:
    max_bytes: int = default("max_audio_bytes")
    max_seconds: float = default("max_audio_seconds")


@dataclass(frozen=True)
class AudioRef:
    """An input_audio part as the client sent it: base64 data, its declared format, and where it was."""

    param: str
    data: Any
    format: Any


def audio_part(value: Any, param: str) -> dict[str, Any]:
    """The part for OpenAI's {"data": base64, "format": "wav" | "mp3"}."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise APIError(400, "An input_audio part needs {'data': base64 audio, 'format': 'wav' or 'mp3'}.", param=param)
    return {"type": "audio", "ref": AudioRef(param=param, data=value["data"], format=value.get("format"))}


def _refs(prompt: ChatPrompt) -> list[AudioRef]:
    return [
        p["ref"]
        for m in prompt.messages
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if isinstance(p, dict) and isinstance(p.get("ref"), AudioRef)
    ]


async def attach_audio(backend: Backend, model_id: str, prompt: Prompt, limits: AudioLimits) -> Prompt:
    """The prompt with its audio decoded, or a 400: the model cannot hear, or the audio is bad or too long."""
    if not isinstance(prompt, ChatPrompt) or not (refs := _refs(prompt)):
        return prompt
    capabilities = await backend.capabilities(model_id)
    if capabilities.task not in (None, "generate"):
        return prompt  # the backend refuses it, naming what the model is for
    if capabilities.audio is not True:
        raise APIError(
            400,
            f"The model '{model_id}' cannot hear: it takes no input_audio content. Transcribe the audio first with"
            " POST /v1/audio/transcriptions and send the text, or use a chat model that hears (e.g. Gemma 4).",
            param=refs[0].param,
            code="audio_not_supported",
        )
    audios = await asyncio.to_thread(lambda: tuple(_decode(ref, limits) for ref in refs))
    messages = [
        {**m, "content": [{"type": "audio"} if isinstance(p.get("ref"), AudioRef) else p for p in m["content"]]}
        if isinstance(m.get("content"), list)
        else m
        for m in prompt.messages
    ]
    return replace(prompt, messages=messages, audios=audios)


def _decode(ref: AudioRef, limits: AudioLimits) -> np.ndarray:
    data = "".join(ref.data.split())  # some clients wrap base64 in lines
    if len(data) // 4 * 3 > limits.max_bytes + 2:  # refuse before decoding a huge payload
        raise _too_large(len(data) // 4 * 3, limits, ref.param)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, f"The audio is not valid base64: {exc}", param=ref.param, code="invalid_audio") from exc
    if len(raw) > limits.max_bytes:
        raise _too_large(len(raw), limits, ref.param)
    try:
        return decode_audio(raw, limits.max_seconds)
    except InvalidRequestError as exc:  # the decoder names `file`, the transcription form's field
        raise APIError(400, exc.message, param=ref.param, code="invalid_audio") from exc


def _too_large(size: int, limits: AudioLimits, param: str) -> APIError:
    return APIError(
        413,
        f"The audio is {size} bytes; the limit is {limits.max_bytes} bytes (max_audio_bytes).",
        param=param,
        code="audio_too_large",
    )
