"""The speech front end: uploaded audio decoded to 16 kHz mono, and Whisper's log-mel spectrogram checked against
a float64 NumPy reference written from the formula (librosa's Slaney mel filters, a centred periodic-Hann STFT)."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest

from mlx_manager.engine.audio.decode import decode_audio
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.testing.tiny_audio import tone, wav_bytes

RATE, N_FFT, HOP = 16_000, 400, 160


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / (200.0 / 3)
    return np.where(f >= 1000, 15.0 + np.log(np.maximum(f, 1e-10) / 1000) / (math.log(6.4) / 27), linear)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return np.where(m >= 15.0, 1000 * np.exp(math.log(6.4) / 27 * (m - 15.0)), m * 200.0 / 3)


def _mel_filters(n_mels: int) -> np.ndarray:
    fft_freqs = np.linspace(0, RATE / 2, N_FFT // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(RATE / 2)), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, fft_freqs.size))
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    return weights * (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]


def reference_log_mel(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Whisper's log-mel (frames, mels): |STFT|^2 without the last frame, mel, log10, 8-decade floor, scaled."""
    x = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT))
    frames = 1 + (x.size - N_FFT) // HOP
    stft = np.stack([np.fft.rfft(x[i * HOP : i * HOP + N_FFT] * window) for i in range(frames)])
    power = np.abs(stft[:-1]) ** 2
    log_spec = np.log10(np.maximum(power @ _mel_filters(n_mels).T, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def test_log_mel_matches_the_formula_on_a_fixed_signal() -> None:
    from mlx_audio.stt.models.whisper.audio import log_mel_spectrogram

    t = np.arange(int(1.5 * RATE)) / RATE
    signal = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    signal = (signal + 0.01 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
    ours = np.array(log_mel_spectrogram(mx.array(signal), n_mels=80))
    ref = reference_log_mel(signal)
    assert ours.shape == ref.shape == (150, 80)
    np.testing.assert_allclose(ours, ref, atol=2e-4)
    # The 440 Hz tone's band is the loudest on average: frames and mel bands are on the axes they claim.
    loudest = int(ours.mean(axis=0).argmax())
    assert _mel_to_hz(np.array(_hz_to_mel(np.array(0.0)) + loudest * float(_hz_to_mel(np.array(8000.0))) / 81)) < 600


def test_wav_is_decoded_to_16khz_mono() -> None:
    samples = tone(0.5, rate=44_100)
    decoded = decode_audio(wav_bytes(samples, rate=44_100))
    assert abs(decoded.size - 8000) <= 2
    expected = tone(0.5)
    # Resampled 44.1 kHz -> 16 kHz (miniaudio's linear resampler) and 16-bit: close to the tone made at 16 kHz.
    assert np.corrcoef(decoded[100:7900], expected[100:7900])[0, 1] > 0.97


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"this is not audio at all" * 10, "could not be decoded"),
        (wav_bytes(tone(1.0))[:5000], "truncated"),
    ],
)
def test_bad_audio_is_a_400_naming_file(data: bytes, says: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_audio(data)
    assert info.value.param == "file" and says in str(info.value)


def test_audio_longer_than_the_limit_names_the_setting() -> None:
    with pytest.raises(InvalidRequestError, match="max_audio_seconds"):
        decode_audio(wav_bytes(tone(2.0)), max_seconds=1.5)
    assert decode_audio(wav_bytes(tone(1.0)), max_seconds=1.5).size == 16_000
