"""Text-to-speech pieces that need no model: the encoders (whole and streamed, decoded back) and TTS detection."""

from __future__ import annotations

import io

import miniaudio
import numpy as np
import pytest
import soundfile

from mlx_manager.engine.audio.detect import audio_task
from mlx_manager.engine.audio.encode import PCM_RATE, StreamEncoder, encode
from mlx_manager.engine.audio.speak import change_speed

RATE = 24_000


def sweep(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32)


def read(data: bytes) -> tuple[np.ndarray, int]:
    with soundfile.SoundFile(io.BytesIO(data)) as f:
        return np.concatenate(list(f.blocks(8192, dtype="float32"))), f.samplerate


@pytest.mark.parametrize(("fmt", "tolerance"), [("wav", 0.0), ("flac", 0.0), ("mp3", 0.08), ("opus", 0.0)])
def test_a_whole_file_decodes_to_the_same_length_and_rate(fmt: str, tolerance: float) -> None:
    samples = sweep(1.5)
    decoded, rate = read(encode(samples, RATE, fmt))
    assert rate == RATE
    assert decoded.size / rate == pytest.approx(1.5, abs=tolerance + 1e-3)
    if fmt in ("wav", "flac"):  # lossless at 16 bits
        assert np.abs(decoded - samples).max() < 1e-4


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "flac", "pcm"])
def test_streamed_pieces_joined_are_a_file_as_long_as_the_whole(fmt: str) -> None:
    samples = sweep(2.0)
    encoder = StreamEncoder(fmt, RATE)
    pieces = [encoder.feed(samples[i : i + 9600]) for i in range(0, samples.size, 9600)] + [encoder.finish()]
    assert sum(1 for p in pieces if p) >= 3  # bytes leave before the end
    data = b"".join(pieces)
    if fmt == "pcm":
        seconds = len(data) / 2 / PCM_RATE
    elif fmt == "flac":  # the total is unknown in a streamed FLAC's header: libsndfile will not read it, dr_flac does
        seconds = miniaudio.decode(data, nchannels=1, sample_rate=RATE).num_frames / RATE
    else:
        decoded, rate = read(data)
        seconds = decoded.size / rate
    assert seconds == pytest.approx(2.0, abs=0.08 if fmt == "mp3" else 1e-3)


def test_a_streamed_wav_says_its_length_is_unknown() -> None:
    encoder = StreamEncoder("wav", RATE)
    head = encoder.feed(sweep(0.1))
    assert head[:4] == b"RIFF" and head[4:8] == b"\xff\xff\xff\xff" and head[40:44] == b"\xff\xff\xff\xff"


def test_pcm_is_resampled_to_24khz_and_opus_to_a_rate_it_takes() -> None:
    assert len(encode(sweep(1.0, 32_000), 32_000, "pcm")) == 2 * PCM_RATE
    assert read(encode(sweep(1.0, 32_000), 32_000, "opus"))[1] == 48_000


def test_speed_changes_the_length_by_its_factor() -> None:
    samples = sweep(1.0)
    assert change_speed(samples, 2.0).size == RATE // 2
    assert change_speed(samples, 0.5).size == RATE * 2
    assert change_speed(samples, 1.0) is samples


@pytest.mark.parametrize(
    ("config", "name", "task"),
    [
        ({"model_type": "soprano"}, "anything", "speak"),
        ({"model_type": "qwen3"}, "mlx-community/Soprano-80M-bf16", "speak"),
        ({"model_type": "qwen3"}, "Qwen/Qwen3-0.6B", None),
        ({"model_type": "whisper"}, "soprano-named-whisper", "transcribe"),
    ],
)
def test_tts_models_are_told_by_config_and_soprano_by_name(config: dict[str, str], name: str, task: str | None) -> None:
    assert audio_task(config, name) == task
