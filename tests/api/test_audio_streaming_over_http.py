"""Streamed transcriptions, the model's turn (priority, time limit) and a client that leaves: a tiny random-weight
Whisper on a real server, driven by the openai SDK and httpx."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import soundfile

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_audio import tone, wav_bytes, write_tiny_whisper
from tests.conftest import asset_cache

WHISPER = "tiny-whisper"
AUDIO_TIMEOUT = 20  # seconds; an hour of audio needs more than twice that on this model


@pytest.fixture(scope="module")
def whisper_dir() -> Path:
    return write_tiny_whisper(asset_cache() / "audio-models" / WHISPER)


@pytest.fixture(scope="module")
def server(whisper_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "MLX_MANAGER_MAX_AUDIO_BYTES": str(20 << 20),
        "MLX_MANAGER_MAX_AUDIO_SECONDS": "7200",
        "MLX_MANAGER_AUDIO_TIMEOUT_SECONDS": str(AUDIO_TIMEOUT),
    }
    with run_server(tmp_path_factory.mktemp("audio-stream-home"), ["--model-dir", str(whisper_dir.parent)], env) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def flac(seconds: int) -> bytes:
    """A long tone that stays small on the wire (FLAC), so a test can send an hour of audio (the tone repeats
    each second)."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.tile(tone(1.0, amplitude=0.05), seconds), 16_000, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hour() -> bytes:
    return flac(3600)


def outcomes(server: ServerProcess) -> dict[str, float]:
    """mlx_manager_transcriptions_total for the tiny model, by outcome."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    found = re.findall(rf'mlx_manager_transcriptions_total{{model="{WHISPER}",outcome="(\w+)"}} ([\d.]+)', text)
    return {outcome: float(count) for outcome, count in found}


def post(server: ServerProcess, data: bytes, timeout: float = 300, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/audio/transcriptions",
        files={"file": ("clip.flac", data)},
        data={"model": WHISPER, **fields},
        timeout=timeout,
    )


def test_a_streamed_transcription_sends_each_window_then_the_same_text(client: openai.OpenAI) -> None:
    audio = ("long.wav", wav_bytes(tone(65.0)))
    whole = client.audio.transcriptions.create(model=WHISPER, file=audio)
    events = list(client.audio.transcriptions.create(model=WHISPER, file=audio, stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}, kinds
    deltas = [e.delta for e in events[:-1]]  # type: ignore[union-attr]
    done = events[-1]
    assert done.text == whole.text  # type: ignore[union-attr]
    assert "".join(deltas).strip() == whole.text
    assert len(deltas) >= 2  # 65 s is three of Whisper's windows, each sent when it is decoded
    usage = done.usage  # type: ignore[union-attr]
    assert usage is not None and usage.type == "tokens" and usage.input_tokens == 65 * 50


def test_stream_is_refused_where_openai_refuses_it(server: ServerProcess) -> None:
    data = wav_bytes(tone(1.0))
    translation = httpx.post(
        f"{server.base_url}/v1/audio/translations",
        files={"file": ("a.wav", data)},
        data={"model": WHISPER, "stream": "true"},
        timeout=60,
    )
    assert translation.status_code == 400 and translation.json()["error"]["param"] == "stream"
    assert "translations" in translation.json()["error"]["message"]
    subtitles = post(server, data, stream="true", response_format="srt")
    assert subtitles.status_code == 400 and subtitles.json()["error"]["param"] == "stream"
    bad = post(server, data, priority="soon")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "priority"


def test_a_client_that_leaves_stops_its_transcription(server: ServerProcess) -> None:
    """20 minutes of audio are abandoned a few seconds after they started: the work stops between windows, and
    the next request is served at once instead of after it (it needs more than AUDIO_TIMEOUT seconds)."""
    before = outcomes(server).get("cancelled", 0)
    with pytest.raises(httpx.ReadTimeout):
        post(server, flac(1200), timeout=5)  # the upload, decoding and log-mel take about 2 s of these
    start = time.monotonic()
    second = post(server, wav_bytes(tone(2.0)), timeout=60)
    assert second.status_code == 200, second.text
    assert time.monotonic() - start < AUDIO_TIMEOUT / 2
    deadline = time.monotonic() + 10
    while outcomes(server).get("cancelled", 0) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outcomes(server).get("cancelled", 0) == before + 1
    assert "stopped (cancelled) after" in server.log_path.read_text(errors="replace")


def test_a_stream_closed_by_its_client_stops_the_transcription(server: ServerProcess) -> None:
    before = outcomes(server).get("cancelled", 0)
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/audio/transcriptions",
        files={"file": ("clip.flac", flac(1200))},
        data={"model": WHISPER, "stream": "true"},
        timeout=60,
    ) as reply:
        assert reply.status_code == 200
        first = next(line for line in reply.iter_lines() if line.startswith("data:"))
        assert "transcript.text.delta" in first
    deadline = time.monotonic() + AUDIO_TIMEOUT / 2
    while outcomes(server).get("cancelled", 0) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert outcomes(server).get("cancelled", 0) == before + 1


def test_a_transcription_past_the_time_limit_is_stopped_with_a_504(server: ServerProcess, hour: bytes) -> None:
    before = outcomes(server).get("expired", 0)
    start = time.monotonic()
    reply = post(server, hour)
    assert reply.status_code == 504 and "audio_timeout_seconds" in reply.json()["error"]["message"]
    assert time.monotonic() - start < AUDIO_TIMEOUT + 15  # the whole hour would take over twice the limit
    assert outcomes(server).get("expired", 0) == before + 1
    metrics = httpx.get(f"{server.base_url}/metrics", timeout=30).text
    assert re.search(r'mlx_manager_time_limits_total{endpoint="audio",kind="generation"} [1-9]', metrics)


def _queue(server: ServerProcess) -> tuple[int, int]:
    models = httpx.get(f"{server.base_url}/admin/models", timeout=30).json()["data"]
    (whisper,) = [m for m in models if m["id"] == WHISPER] or [{"running": 0, "waiting": 0}]
    return whisper["running"], whisper["waiting"]


def _until_queue(server: ServerProcess, want: tuple[int, int], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while _queue(server) != want:
        assert time.monotonic() < end, f"queue {_queue(server)}, wanted {want}"
        time.sleep(0.05)


def test_waiting_transcriptions_run_lowest_priority_first(server: ServerProcess) -> None:
    """While one runs, a priority 5 request arrives before a priority 0 one: the priority 0 one runs first."""
    finished: list[str] = []

    def send(name: str, data: bytes, priority: int) -> None:
        assert post(server, data, priority=str(priority)).status_code == 200
        finished.append(name)

    busy = threading.Thread(target=send, args=("busy", flac(300), 0))
    busy.start()
    _until_queue(server, (1, 0))  # the admin view shows the audio model's turn queue
    late = threading.Thread(target=send, args=("background", wav_bytes(tone(1.0)), 5))
    late.start()
    _until_queue(server, (1, 1))
    urgent = threading.Thread(target=send, args=("urgent", wav_bytes(tone(1.5)), 0))
    urgent.start()
    _until_queue(server, (1, 2))
    for t in (busy, late, urgent):
        t.join(120)
    assert finished == ["busy", "urgent", "background"]
    assert _queue(server) == (0, 0)


def test_flac_stays_what_miniaudio_decodes() -> None:
    """The FLAC helper above is lossless: the decoder gets the tone back (to 16-bit precision)."""
    from mlx_manager.engine.audio.decode import decode_audio

    samples = decode_audio(flac(1))
    assert np.max(np.abs(samples - tone(1.0, amplitude=0.05))) < 1e-3
