"""Transcription requests against a loaded speech model: decode the upload, run on the model's thread."""

from __future__ import annotations

import asyncio

from mlx_manager.engine.audio.decode import decode_audio
from mlx_manager.engine.audio.model import SpeechModel
from mlx_manager.engine.audio.types import TranscribeOptions, Transcript
from mlx_manager.engine.pool import ModelRunner


async def transcribe(
    runner: ModelRunner, model: SpeechModel, data: bytes, options: TranscribeOptions, max_seconds: float | None
) -> Transcript:
    """Requests to one model run one at a time on its thread, in arrival order (as embeddings do)."""
    audio = await asyncio.to_thread(decode_audio, data, max_seconds)
    return await runner.run(model.transcribe, audio, options)
