"""Text to speech over HTTP: a tiny random-weight Soprano on a real server, driven by the openai SDK.

The tiny model never says stop, so each sentence runs to the server's token cap (engine/audio/tts.token_cap) and
its length is known: 2048 samples a token at the model's 24 kHz.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import httpx
import miniaudio
import numpy as np
import openai
import pytest
import soundfile

from mlx_manager.engine.audio.tts import token_cap
from mlx_manager.sse import iter_json
from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_audio import write_tiny_whisper
from mlx_manager.testing.tiny_tts import SAMPLE_RATE, write_tiny_soprano
from tests.conftest import asset_cache

TTS = "tiny-soprano"
Format = Literal["mp3", "opus", "flac", "wav", "pcm"]
WHISPER = "tiny-whisper"
MAX_CHARS = 2000
AUDIO_TIMEOUT = 30  # seconds: a request here takes 2-15 s on a loaded 2-core machine
TOKEN_SAMPLES = 2048
SHORT = "Hi."
# Two sentences of 30 characters or more: Soprano speaks them apart (shorter ones are merged).
TWO = "The quick brown fox jumps over the lazy dog. A second sentence follows the first one here."


def seconds_of(text: str) -> float:
    """What the tiny model says for sentences Soprano does not merge or rewrite: each runs to its token cap."""
    sentences = re.split(r"(?<=[.!?])\s+", text)
    return sum(token_cap(f"[STOP][TEXT]{s}[START]") for s in sentences) * TOKEN_SAMPLES / SAMPLE_RATE


@pytest.fixture(scope="module")
def tts_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    soprano = write_tiny_soprano(asset_cache() / "tts-models" / TTS)
    whisper = write_tiny_whisper(asset_cache() / "audio-models" / WHISPER)
    args = ["--model-dir", str(soprano.parent), "--model-dir", str(whisper.parent), "--model-dir", str(tiny_models_dir)]
    env = {"MLX_MANAGER_MAX_SPEECH_CHARS": str(MAX_CHARS), "MLX_MANAGER_AUDIO_TIMEOUT_SECONDS": str(AUDIO_TIMEOUT)}
    with run_server(tmp_path_factory.mktemp("tts-home"), args, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(tts_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tts_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def decode(data: bytes) -> tuple[np.ndarray, int]:
    """Read back with libsndfile, block by block (a streamed file's header does not promise a length)."""
    with soundfile.SoundFile(io.BytesIO(data)) as f:
        blocks = list(f.blocks(8192, dtype="float32"))
        return (np.concatenate(blocks) if blocks else np.zeros(0, np.float32)), f.samplerate


def test_tts_models_are_listed_with_their_task(client: openai.OpenAI, tts_server: ServerProcess) -> None:
    assert TTS in {m.id for m in client.models.list()}
    local = httpx.get(f"{tts_server.base_url}/admin/models/local", timeout=30).json()
    rows = local["data"] if isinstance(local, dict) else local
    assert next(m for m in rows if m["id"] == TTS)["task"] == "speak"


def test_wav_is_the_models_rate_and_as_long_as_the_tokens_said(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav").content
    samples, rate = decode(audio)
    assert rate == SAMPLE_RATE
    assert samples.size / rate == pytest.approx(seconds_of(SHORT), abs=1e-3)
    assert np.abs(samples).max() > 0.001  # sound, not silence


@pytest.mark.parametrize(("response_format", "tolerance"), [("flac", 1e-3), ("mp3", 0.1), ("opus", 0.05)])
def test_each_format_decodes_back_to_the_same_length(
    client: openai.OpenAI, response_format: Format, tolerance: float
) -> None:
    audio = client.audio.speech.create(model=TTS, input=SHORT, voice="nova", response_format=response_format)
    samples, rate = decode(audio.content)
    assert rate in (SAMPLE_RATE, 48_000) and np.abs(samples).max() > 0.001
    assert samples.size / rate == pytest.approx(seconds_of(SHORT), abs=tolerance)


def test_pcm_is_24khz_16_bit_little_endian(client: openai.OpenAI) -> None:
    pcm = client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="pcm").content
    assert len(pcm) % 2 == 0
    samples = np.frombuffer(pcm, "<i2")
    assert samples.size / 24_000 == pytest.approx(seconds_of(SHORT), abs=1e-3)
    assert np.abs(samples).max() > 30


def test_mp3_is_the_default_format(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model=TTS, input=SHORT, voice="alloy").content
    decoded = miniaudio.decode(audio, nchannels=1)
    assert decoded.num_frames / decoded.sample_rate == pytest.approx(seconds_of(SHORT), abs=0.1)


def test_speed_two_halves_the_duration(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav", speed=2.0)
    samples, rate = decode(audio.content)
    assert samples.size / rate == pytest.approx(seconds_of(SHORT) / 2, abs=1e-3)


@pytest.mark.parametrize("response_format", ["wav", "mp3", "flac", "opus", "pcm"])
def test_stream_format_audio_sends_the_audio_as_it_is_made(client: openai.OpenAI, response_format: Format) -> None:
    pieces: list[tuple[float, bytes]] = []
    with client.audio.speech.with_streaming_response.create(
        model=TTS, input=TWO, voice="alloy", response_format=response_format, stream_format="audio"
    ) as response:
        for piece in response.iter_bytes():
            pieces.append((time.monotonic(), piece))
    data = b"".join(p for _, p in pieces)
    if response_format == "pcm":
        seconds = len(data) / 2 / 24_000
    elif response_format == "flac":  # libsndfile will not read a FLAC of unknown length: miniaudio does
        decoded = miniaudio.decode(data, nchannels=1, sample_rate=SAMPLE_RATE)
        seconds = decoded.num_frames / SAMPLE_RATE
    else:
        samples, rate = decode(data)
        seconds = samples.size / rate
    assert seconds == pytest.approx(seconds_of(TWO), abs=0.1)
    # The first piece left long before the last was made (a sentence takes seconds here).
    assert pieces[-1][0] - pieces[0][0] > 0.2, [len(p) for _, p in pieces]


def test_stream_format_sse_sends_deltas_then_done_with_usage(client: openai.OpenAI) -> None:
    events: list[dict[str, object]] = []
    with client.audio.speech.with_streaming_response.create(
        model=TTS, input=TWO, voice="alloy", response_format="wav", stream_format="sse"
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [data for _, data in iter_json(response.http_response)]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and set(kinds[:-1]) == {"speech.audio.delta"}
    assert len(kinds) - 1 >= 2 * 4  # pieces within each sentence, not a sentence at a time (about 1 s each)
    audio = b"".join(base64.b64decode(str(e["audio"])) for e in events[:-1])
    samples, rate = decode(audio)
    assert samples.size / rate == pytest.approx(seconds_of(TWO), abs=1e-3)
    usage = events[-1]["usage"]
    assert isinstance(usage, dict)
    spoken_tokens = round(seconds_of(TWO) * SAMPLE_RATE / TOKEN_SAMPLES)
    assert usage["output_tokens"] == spoken_tokens and usage["input_tokens"] > len(TWO)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_an_unknown_voice_is_a_400_listing_the_voices(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.audio.speech.create(model=TTS, input=SHORT, voice="no-such-voice")
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "voice"
    assert "alloy" in error["message"] and "default" in error["message"]
    # A voice object ({"id": ...}, as the SDK sends a custom voice) names one too.
    pcm = client.audio.speech.create(model=TTS, input=SHORT, voice={"id": "default"}, response_format="pcm")
    assert len(pcm.content) == round(seconds_of(SHORT) * 24_000) * 2


@pytest.mark.parametrize(
    ("fields", "param", "says"),
    [
        ({"input": ""}, "input", "empty"),
        ({"input": "   "}, "input", "empty"),
        ({"input": "x" * (MAX_CHARS + 1)}, "input", "max_speech_chars"),
        ({"response_format": "aac"}, "response_format", "no encoder"),
        ({"speed": 5}, "speed", ""),
        ({"model": WHISPER}, "model", "speech-to-text"),
        ({"model": "tiny-llama"}, "model", "text-generation"),
        ({"bogus": 1}, "bogus", ""),
    ],
)
def test_bad_requests_are_400s_naming_the_field(
    tts_server: ServerProcess, fields: dict[str, object], param: str, says: str
) -> None:
    body = {"model": TTS, "input": SHORT, "voice": "alloy", **fields}
    response = httpx.post(f"{tts_server.base_url}/v1/audio/speech", json=body, timeout=120)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"]


def test_an_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.audio.speech.create(model="no-such-tts", input=SHORT, voice="alloy")


def test_four_at_once_all_complete(client: openai.OpenAI) -> None:
    def one(i: int) -> float:
        audio = client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav", speed=1 + i)
        samples, rate = decode(audio.content)
        return samples.size / rate

    with ThreadPoolExecutor(4) as pool:
        durations = list(pool.map(one, range(4)))
    assert durations == pytest.approx([seconds_of(SHORT) / (1 + i) for i in range(4)], abs=1e-3)


def test_a_client_that_leaves_stops_the_speech(client: openai.OpenAI, tts_server: ServerProcess) -> None:
    """Eight sentences streamed, the client leaves after the first: the model is free for the next request
    long before the other seven would have been spoken."""
    start = time.monotonic()
    client.audio.speech.create(model=TTS, input=TWO.split(". ")[0] + ".", voice="alloy", response_format="wav")
    one_sentence = time.monotonic() - start
    with client.audio.speech.with_streaming_response.create(
        model=TTS, input=" ".join([TWO] * 4), voice="alloy", response_format="pcm", stream_format="audio"
    ) as response:
        next(response.iter_bytes())
    start = time.monotonic()
    client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav")
    waited = time.monotonic() - start
    assert waited < 3 * one_sentence, (waited, one_sentence)
    loaded = {m["id"]: m for m in httpx.get(f"{tts_server.base_url}/admin/models", timeout=30).json()["data"]}
    assert loaded[TTS]["active_requests"] == 0


def test_a_client_that_leaves_a_whole_file_request_stops_the_speech(
    client: openai.OpenAI, tts_server: ServerProcess
) -> None:
    """No stream: the server notices the closed connection while it speaks and stops at the next token."""
    start = time.monotonic()
    client.audio.speech.create(model=TTS, input=TWO.split(". ")[0] + ".", voice="alloy", response_format="wav")
    one_sentence = time.monotonic() - start
    body = {"model": TTS, "input": " ".join([TWO] * 4), "voice": "alloy", "response_format": "wav"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{tts_server.base_url}/v1/audio/speech", json=body, timeout=httpx.Timeout(60, read=2))
    start = time.monotonic()
    client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav")
    assert time.monotonic() - start < 3 * one_sentence


def test_the_tts_model_lives_in_the_pool(client: openai.OpenAI, tts_server: ServerProcess) -> None:
    base = tts_server.base_url
    assert httpx.post(f"{base}/admin/models/{TTS}/load?pin=true", timeout=120).status_code == 200
    loaded = {m["id"]: m for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}
    assert loaded[TTS]["pinned"] and loaded[TTS]["memory_bytes"] > 1_000_000
    assert httpx.post(f"{base}/admin/models/{TTS}/unload", timeout=60).status_code == 200
    assert TTS not in {m["id"] for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}
    client.audio.speech.create(model=TTS, input=SHORT, voice="alloy", response_format="wav")
    assert TTS in {m["id"] for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}


def test_waiting_speech_runs_lowest_priority_first(tts_server: ServerProcess) -> None:
    """While a multi-sentence request speaks, a priority 5 request arrives before a priority 0 one: the priority 0
    one gets the model's next turn (turns are taken a sentence at a time)."""
    finished: list[str] = []
    speaking = threading.Event()

    def body(text: str, priority: int) -> dict[str, object]:
        return {"model": TTS, "input": text, "voice": "alloy", "response_format": "wav", "priority": priority}

    def send(name: str, text: str, priority: int) -> None:
        reply = httpx.post(f"{tts_server.base_url}/v1/audio/speech", json=body(text, priority), timeout=300)
        assert reply.status_code == 200, reply.text
        finished.append(name)

    def speak_long() -> None:  # streamed, so the others are sent once it holds the model, not while it loads
        streamed = {**body(" ".join([TWO, TWO]), 0), "stream_format": "audio"}
        with httpx.stream("POST", f"{tts_server.base_url}/v1/audio/speech", json=streamed, timeout=300) as reply:
            assert reply.status_code == 200
            received = 0
            for chunk in reply.iter_bytes():
                received += len(chunk)
                if received > 1000:  # audio past the WAV header: the model is speaking
                    speaking.set()
        finished.append("busy")

    busy = threading.Thread(target=speak_long)
    busy.start()
    assert speaking.wait(120)
    late = threading.Thread(target=send, args=("background", SHORT, 5))
    late.start()
    time.sleep(0.05)
    urgent = threading.Thread(target=send, args=("urgent", SHORT, 0))
    urgent.start()
    for t in (busy, late, urgent):
        t.join(300)
    assert finished.index("urgent") < finished.index("background"), finished


def test_speech_past_the_time_limit_is_stopped_with_a_504_or_an_error_event(tts_server: ServerProcess) -> None:
    """Two requests with minutes of work at once: the whole-file one is a 504, the SSE one ends with an error event
    after the audio made in time; both name audio_timeout_seconds."""
    text = " ".join(["This sentence is long enough to be spoken on its own."] * 30)
    body = {"model": TTS, "input": text, "voice": "alloy", "response_format": "wav"}
    replies: list[httpx.Response] = []
    whole = threading.Thread(
        target=lambda: replies.append(httpx.post(f"{tts_server.base_url}/v1/audio/speech", json=body, timeout=300))
    )
    start = time.monotonic()
    whole.start()
    with httpx.stream(
        "POST", f"{tts_server.base_url}/v1/audio/speech", json={**body, "stream_format": "sse"}, timeout=300
    ) as stream:
        events = [data for _, data in iter_json(stream)]
    whole.join(300)
    assert time.monotonic() - start < AUDIO_TIMEOUT + 20
    assert replies[0].status_code == 504 and "audio_timeout_seconds" in replies[0].json()["error"]["message"]
    assert {e.get("type") for e in events[:-1]} == {"speech.audio.delta"}
    assert "audio_timeout_seconds" in events[-1]["error"]["message"]
    metrics = httpx.get(f"{tts_server.base_url}/metrics", timeout=30).text
    # Each stopped request counted once (no other test here runs past the limit).
    assert re.search(r'^mlx_manager_time_limits_total{endpoint="audio",kind="generation"} 2(\.0)?$', metrics, re.M)
