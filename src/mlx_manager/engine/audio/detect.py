"""Tell speech models apart from language models, from config.json alone (no MLX here)."""

from __future__ import annotations

from typing import Any

from mlx_manager.engine.types import ModelTask

# mlx-examples' Whisper format names its sizes n_mels / n_audio_ctx; Hugging Face's has model_type "whisper".
_WHISPER_KEYS = frozenset({"n_mels", "n_audio_ctx", "n_text_ctx"})


def is_whisper(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "whisper" or config.keys() >= _WHISPER_KEYS


def tts_type(config: dict[str, Any], name: str = "") -> str | None:
    """The mlx-audio TTS architecture of a folder, for those that load from the folder alone (no codec or voice
    pack fetched). Soprano's checkpoints say model_type "qwen3": mlx-audio, too, tells them by their name."""
    if config.get("model_type") == "soprano" or (config.get("model_type") == "qwen3" and "soprano" in name.lower()):
        return "soprano"
    return None


def audio_task(config: dict[str, Any], name: str = "") -> ModelTask | None:
    """ "transcribe" for a speech-to-text model this server runs, "speak" for a text-to-speech one, else None;
    `name` is the model's id and folder name."""
    if is_whisper(config):
        return "transcribe"
    return "speak" if tts_type(config, name) else None
