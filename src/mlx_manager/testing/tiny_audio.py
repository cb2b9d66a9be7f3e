"""Tiny random-weight Whisper folders for tests and benchmarks, written offline in Hugging Face's processor layout.

The vocabulary is byte-level (256 byte tokens, optional padding tokens, then Whisper's special and timestamp
tokens in their real order), so the English-only decoding path of mlx-audio's Whisper runs unchanged. The weights
are random: the text is noise, but every step (log-mel, encoder, decoding with timestamps, long-form windows) runs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np

SPECIALS = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
)
TIMESTAMPS = tuple(f"<|{i * 0.02:.2f}|>" for i in range(1501))
# whisper-tiny's shape (about 39M parameters with its 51865-token vocabulary).
TINY_SHAPE = {"n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 4, "n_text_state": 384, "n_text_head": 6,
              "n_text_layer": 4, "n_text_ctx": 448}  # fmt: skip
SMALL_SHAPE = {"n_audio_state": 64, "n_audio_head": 2, "n_audio_layer": 2, "n_text_state": 64, "n_text_head": 2,
               "n_text_layer": 2, "n_text_ctx": 64}  # fmt: skip
# A short text context keeps the random model's windows short (Whisper decodes up to half of it per window).


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-character table, which Whisper's byte-level BPE uses."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def _vocab(padding: int) -> dict[str, int]:
    table = _bytes_to_unicode()
    tokens = [table[b] for b in range(256)] + [f"tok{i}" for i in range(padding)]
    return {tok: i for i, tok in enumerate([*tokens, *SPECIALS, *TIMESTAMPS])}


def write_tiny_whisper(
    folder: Path, *, seed: int = 0, shape: dict[str, int] | None = None, vocab_padding: int = 0
) -> Path:
    """A Whisper folder (config.json, model.safetensors, tokenizer and feature extractor files); kept if there."""
    if (folder / "model.safetensors").is_file():
        return folder
    from mlx.utils import tree_flatten
    from mlx_audio.stt.models.whisper.whisper import Model, ModelDimensions
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = _vocab(vocab_padding)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    eot = SPECIALS[0]
    tokenizer = WhisperTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=eot, bos_token=eot, eos_token=eot,
        pad_token=eot,
    )  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": [*SPECIALS[1:], *TIMESTAMPS]})
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(str(folder))
    config = {"model_type": "whisper", "n_mels": 80, "n_audio_ctx": 1500, "n_vocab": len(vocab)}
    config |= shape or SMALL_SHAPE
    mx.random.seed(seed)
    model = Model(ModelDimensions.from_dict(config), mx.float32)
    # Scaled like a trained model's residual stream, so attention and softmax are not saturated noise.
    params: dict[str, mx.array] = {}
    for name, value in dict(tree_flatten(model.parameters())).items():
        assert isinstance(value, mx.array)
        params[name] = value * (1.0 / math.sqrt(value.shape[-1])) if value.ndim == 2 else value
    mx.save_safetensors(str(folder / "model.safetensors"), params)
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return folder


def tone(seconds: float, frequency: float = 440.0, rate: int = 16_000, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone with a slow vibrato, float32 mono."""
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t + 3 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = 16_000) -> bytes:
    """16-bit PCM WAV of float samples in [-1, 1]."""
    import io
    import wave

    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()
