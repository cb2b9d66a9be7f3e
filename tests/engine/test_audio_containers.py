"""Uploads in each container a client may send: FLAC, MP3, Ogg Vorbis and Ogg Opus (written here by libsndfile from a
known tone), M4A (AAC, ALAC) and WebM Opus (written by PyAV, as phones and browsers record) decode to that tone at
16 kHz; cut-short or corrupt files and containers nothing here reads are 400s
naming `file`."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile

from mlx_manager.engine.audio.decode import decode_audio
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.testing.tiny_audio import tone

SECONDS = 3.0
# (format, subtype, rate): the rate each is written at, as such files usually come.
CONTAINERS = {
    "flac": ("FLAC", "PCM_16", 44_100),
    "mp3": ("MP3", "MPEG_LAYER_III", 44_100),
    "ogg": ("OGG", "VORBIS", 44_100),
    "opus": ("OGG", "OPUS", 48_000),
    "m4a-aac": ("mp4", "aac", 44_100),
    "m4a-alac": ("ipod", "alac", 44_100),
    "webm": ("webm", "libopus", 48_000),
}


def _with_ffmpeg(fmt: str, codec: str, rate: int, seconds: float) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(seconds, rate=rate).reshape(1, -1), format="flt", layout="mono")
        frame.rate = rate
        ctx = stream.codec_context
        resampler = av.AudioResampler(ctx.format.name, "mono", rate, frame_size=ctx.frame_size or None)
        for piece in resampler.resample(frame) + resampler.resample(None) + [None]:
            for packet in stream.encode(piece):
                out.mux(packet)
    return buffer.getvalue()


def encoded(kind: str, seconds: float = SECONDS) -> bytes:
    fmt, subtype, rate = CONTAINERS[kind]
    if fmt.islower():
        return _with_ffmpeg(fmt, subtype, rate, seconds)
    buffer = io.BytesIO()
    soundfile.write(buffer, tone(seconds, rate=rate), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def peak_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1 / 16_000)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_each_container_decodes_to_the_tone_at_16khz(kind: str) -> None:
    samples = decode_audio(encoded(kind))
    # Lossy codecs pad the start (encoder delay) by up to a few frames.
    assert samples.size / 16_000 == pytest.approx(SECONDS, abs=0.08)
    # The tone's carrier (440 Hz with a slow vibrato) is the strongest frequency, at its level (amplitude 0.3).
    assert abs(peak_hz(samples[4000:-4000]) - 440) < 15
    assert np.sqrt(np.mean(samples[4000:-4000] ** 2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
    if kind in ("flac", "m4a-alac"):  # lossless: the same samples, up to 16-bit rounding and the resampler
        assert np.corrcoef(samples[800:-800], tone(SECONDS)[800:-800])[0, 1] > 0.97


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_file_cut_in_half_is_a_400(kind: str) -> None:
    data = encoded(kind)
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(data[: len(data) // 2])
    assert info.value.param == "file"
    assert "truncated" in str(info.value) or "could not be decoded" in str(info.value)


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_a_corrupt_file_is_a_400(kind: str) -> None:
    data = encoded(kind)
    corrupt = data[:64] + bytes(len(data) - 64)
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(corrupt)
    assert info.value.param == "file"


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"#!AMR\n", "AMR"),
        (b"caff\x00\x01\x00\x00", "CAF"),
    ],
)
def test_containers_nothing_here_reads_are_a_400_naming_what_is(head: bytes, name: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(head + bytes(2000))
    message = str(info.value)
    assert info.value.param == "file" and name in message
    assert "WAV, FLAC, MP3, Ogg Vorbis, Ogg Opus, MP4/M4A or WebM" in message
