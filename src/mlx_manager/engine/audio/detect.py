"""Tell speech models apart from language models, from config.json alone (no MLX here)."""

from __future__ import annotations

from typing import Any

from mlx_manager.engine.types import ModelTask

# mlx-examples' Whisper format names its sizes n_mels / n_audio_ctx; Hugging Face's has model_type "whisper".
_WHISPER_KEYS = frozenset({"n_mels", "n_audio_ctx", "n_text_ctx"})


def is_whisper(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "whisper" or config.keys() >= _WHISPER_KEYS


# Text-to-speech architectures mlx-audio runs from the folder alone (no codec or voice pack fetched at load).
TTS_TYPES = frozenset({"soprano"})


def audio_task(config: dict[str, Any]) -> ModelTask | None:
    """ "transcribe" for a speech-to-text model this server runs, "speak" for a text-to-speech one, else None."""
    if is_whisper(config):
        return "transcribe"
    return "speak" if config.get("model_type") in TTS_TYPES else None
