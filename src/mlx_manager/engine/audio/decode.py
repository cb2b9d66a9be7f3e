"""Uploaded audio to 16 kHz mono float32 samples, with miniaudio (WAV, FLAC, MP3, Ogg Vorbis). No MLX here."""

from __future__ import annotations

import struct

import miniaudio
import numpy as np

from mlx_manager.engine.errors import InvalidRequestError

SAMPLE_RATE = 16_000
FORMATS = "WAV, FLAC, MP3 or Ogg Vorbis"


def _check_riff(data: bytes) -> None:
    """A WAV file whose RIFF header promises more bytes than arrived was cut off (dr_wav would decode the rest)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) >= 12:
        declared = struct.unpack("<I", data[4:8])[0] + 8
        if declared != 0xFFFFFFFF + 8 and declared > len(data):  # 0xFFFFFFFF: a stream of unknown length
            raise InvalidRequestError(
                f"The audio file is truncated: its WAV header declares {declared} bytes, {len(data)} arrived.",
                param="file",
            )


def decode_audio(data: bytes, max_seconds: float | None = None) -> np.ndarray:
    """Samples in [-1, 1] at 16 kHz, mono; a 400 naming `file` for anything that is not decodable audio, and
    naming max_audio_seconds for audio longer than that."""
    if not data:
        raise InvalidRequestError("The audio file is empty.", param="file")
    _check_riff(data)
    try:
        info = miniaudio.decode(
            data, output_format=miniaudio.SampleFormat.FLOAT32, nchannels=1, sample_rate=SAMPLE_RATE
        )
    except miniaudio.MiniaudioError as exc:
        raise InvalidRequestError(f"The file could not be decoded as audio ({FORMATS}): {exc}", param="file") from exc
    samples = np.frombuffer(info.samples, dtype=np.float32)
    if samples.size == 0:
        raise InvalidRequestError("The audio file holds no samples.", param="file")
    if not np.isfinite(samples).all():
        raise InvalidRequestError("The audio file holds samples that are not finite numbers.", param="file")
    seconds = samples.size / SAMPLE_RATE
    if max_seconds is not None and seconds > max_seconds:
        raise InvalidRequestError(
            f"The audio lasts {seconds:.1f} s, longer than the server's limit of {max_seconds:g} s"
            " (max_audio_seconds).",
            param="file",
        )
    return samples
