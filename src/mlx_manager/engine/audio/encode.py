"""Speech samples to OpenAI's response formats with soundfile (libsndfile 1.2: WAV, FLAC, MP3, Ogg Opus), whole or as
a stream whose pieces, joined, are a valid file. No MLX here."""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")  # OpenAI's list; aac has no encoder here
ENCODED = ("mp3", "opus", "flac", "wav", "pcm")
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "flac": "audio/flac", "wav": "audio/wav", "pcm": "audio/pcm"}
_SOUNDFILE = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "flac": ("FLAC", "PCM_16"),
              "wav": ("WAV", "PCM_16")}  # fmt: skip
PCM_RATE = 24_000  # OpenAI's pcm is 24 kHz, 16-bit signed little-endian, and clients assume it
_OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)


def output_rate(response_format: str, rate: int) -> int:
    """The rate a format is written at: the model's, except where the format or OpenAI's clients need another."""
    if response_format == "pcm":
        return PCM_RATE
    if response_format == "opus" and rate not in _OPUS_RATES:
        return 48_000
    return rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear resampling to another rate (for formats and clients that need one rate, and for speed)."""
    if rate == target or samples.size < 2:
        return samples
    length = max(round(samples.size * target / rate), 1)
    return np.interp(np.linspace(0, samples.size - 1, length), np.arange(samples.size), samples).astype(np.float32)


def _options(response_format: str) -> dict[str, Any]:
    # Constant bitrate: a reader without the Xing tag (a stream has none) then knows the length from the size.
    return {"bitrate_mode": "CONSTANT", "compression_level": 0.5} if response_format == "mp3" else {}


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def encode(samples: np.ndarray, rate: int, response_format: str) -> bytes:
    """A whole file (or raw PCM) of mono float samples."""
    target = output_rate(response_format, rate)
    samples = resample(samples, rate, target)
    if response_format == "pcm":
        return _pcm16(samples)
    fmt, subtype = _SOUNDFILE[response_format]
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, target, format=fmt, subtype=subtype, **_options(response_format))
    return buffer.getvalue()


class _Sink:
    """The file libsndfile writes to: what it appends is handed on; a later rewrite of sent bytes (a header's final
    length) is kept here only."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0

    def write(self, chunk: Any) -> int:
        chunk = bytes(chunk)
        end = self.pos + len(chunk)
        if end > len(self.data):
            self.data.extend(b"\0" * (end - len(self.data)))
        self.data[self.pos : end] = chunk
        self.pos = end
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else len(self.data) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        chunk = bytes(self.data[self.pos : None if size < 0 else self.pos + size])
        self.pos += len(chunk)
        return chunk


class StreamEncoder:
    """Feed float samples, get the bytes that are final so far. WAV's header says "length unknown" (0xFFFFFFFF, as a
    stream's), FLAC's total is left 0 (unknown), MP3's Xing/Info placeholder frame is left out, so a decoder reads on
    to the end rather than stopping at the length the encoder first wrote."""

    def __init__(self, response_format: str, rate: int) -> None:
        self.format = response_format
        self.rate = rate
        self.target = output_rate(response_format, rate)
        self._sent = 0
        self._header = response_format == "wav"
        self._file: Any = None
        if response_format in ("mp3", "opus", "flac"):
            import soundfile

            fmt, subtype = _SOUNDFILE[response_format]
            self._sink = _Sink()
            self._file = soundfile.SoundFile(
                self._sink, "w", self.target, 1, subtype, format=fmt, **_options(response_format)
            )

    def _wav_header(self) -> bytes:
        unknown = 0xFFFFFFFF
        fmt = struct.pack("<HHIIHH", 1, 1, self.target, self.target * 2, 2, 16)
        return (
            b"RIFF"
            + struct.pack("<I", unknown)
            + b"WAVEfmt "
            + struct.pack("<I", 16)
            + fmt
            + b"data"
            + (struct.pack("<I", unknown))
        )

    def _new_bytes(self) -> bytes:
        out = bytes(self._sink.data[self._sent :])
        first = self._sent == 0
        self._sent += len(out)
        return _drop_tag_frame(out) if first and self.format == "mp3" else out

    def feed(self, samples: np.ndarray) -> bytes:
        samples = resample(samples, self.rate, self.target)
        if self._file is None:
            head = self._wav_header() if self._header else b""
            self._header = False
            return head + _pcm16(samples)
        self._file.write(samples)
        return self._new_bytes()

    def finish(self) -> bytes:
        """The rest (an encoder's buffered frames); a stream that never got samples still gets a valid header."""
        if self._file is None:
            head = self._wav_header() if self._header else b""
            self._header = False
            return head
        self._file.close()
        return self._new_bytes()


def _drop_tag_frame(data: bytes) -> bytes:
    """LAME's first frame is a placeholder for the Xing/Info tag it fills in at the end (the frame count): a stream
    cannot go back to it, so it leaves the frame out, and decoders count the frames themselves."""
    if len(data) < 8 or data[0] != 0xFF:
        return data
    after = data.find(data[:2], 4)  # the placeholder's body is zeros: the next header starts the audio
    return data[after:] if after > 0 and not any(data[4:after]) else data
