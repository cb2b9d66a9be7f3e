"""Speech to text over HTTP: a tiny random-weight Whisper on a real server, driven by the openai SDK."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_audio import tone, wav_bytes, write_tiny_whisper
from tests.conftest import asset_cache

WHISPER = "tiny-whisper"
MAX_AUDIO_BYTES = 3_000_000
MAX_AUDIO_SECONDS = 90


@pytest.fixture(scope="module")
def whisper_dir() -> Path:
    return write_tiny_whisper(asset_cache() / "audio-models" / WHISPER)


@pytest.fixture(scope="module")
def audio_server(
    whisper_dir: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    env = {"MLX_MANAGER_MAX_AUDIO_BYTES": str(MAX_AUDIO_BYTES), "MLX_MANAGER_MAX_AUDIO_SECONDS": str(MAX_AUDIO_SECONDS)}
    args = ["--model-dir", str(whisper_dir.parent), "--model-dir", str(tiny_models_dir)]
    with run_server(tmp_path_factory.mktemp("audio-home"), args, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def audio_client(audio_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{audio_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def test_speech_models_are_listed_with_their_task(audio_client: openai.OpenAI, audio_server: ServerProcess) -> None:
    assert WHISPER in {m.id for m in audio_client.models.list()}
    local = httpx.get(f"{audio_server.base_url}/admin/models/local", timeout=30).json()
    rows = local["data"] if isinstance(local, dict) else local
    assert next(m for m in rows if m["id"] == WHISPER)["task"] == "transcribe"


def test_transcription_is_what_mlx_audio_decodes(audio_client: openai.OpenAI, whisper_dir: Path) -> None:
    """The server's text and segments equal mlx-audio's Whisper run directly on the same samples."""
    from mlx_manager.engine.audio.decode import decode_audio
    from mlx_manager.engine.audio.model import load_speech_model
    from mlx_manager.engine.audio.types import TranscribeOptions
    from mlx_manager.engine.discovery import inspect_model

    audio = wav_bytes(tone(2.0))
    reply = audio_client.audio.transcriptions.create(
        model=WHISPER, file=("clip.wav", audio), response_format="verbose_json", timestamp_granularities=["segment"]
    )
    direct = load_speech_model(inspect_model(whisper_dir, WHISPER, "folder")).transcribe(
        decode_audio(audio), TranscribeOptions()
    )
    assert reply.text == direct.text
    assert [s.text for s in reply.segments or []] == [s.text for s in direct.segments]
    assert [(s.start, s.end) for s in reply.segments or []] == [(s.start, s.end) for s in direct.segments]
    assert reply.language == "english" and reply.duration == pytest.approx(2.0, abs=0.01)
    plain = audio_client.audio.transcriptions.create(model=WHISPER, file=("clip.wav", audio))
    assert plain.text == direct.text
    text = audio_client.audio.transcriptions.create(model=WHISPER, file=("clip.wav", audio), response_format="text")
    assert str(text).strip() == direct.text


def test_subtitles_have_one_cue_per_spoken_segment(audio_client: openai.OpenAI) -> None:
    audio = ("clip.wav", wav_bytes(tone(2.0)))
    verbose = audio_client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="verbose_json")
    spoken = [s for s in verbose.segments or [] if s.text.strip()]
    srt = str(audio_client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="srt"))
    vtt = str(audio_client.audio.transcriptions.create(model=WHISPER, file=audio, response_format="vtt"))
    srt_times = re.findall(r"^(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})$", srt, re.M)
    vtt_times = re.findall(r"^(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})$", vtt, re.M)
    assert vtt.startswith("WEBVTT\n\n")
    assert len(srt_times) == len(vtt_times) == len(spoken)
    if spoken:
        first = spoken[0]
        assert srt_times[0][0] == f"00:00:{int(first.start):02d},{round(first.start * 1000) % 1000:03d}"
        assert srt.startswith("1\n")


def test_long_audio_runs_in_several_windows(audio_client: openai.OpenAI) -> None:
    """65 s is more than two of Whisper's 30 s windows: segments come from windows past the first."""
    reply = audio_client.audio.transcriptions.create(
        model=WHISPER, file=("long.wav", wav_bytes(tone(65.0))), response_format="verbose_json"
    )
    assert reply.duration == pytest.approx(65.0, abs=0.01)
    seeks = {s.seek for s in reply.segments or []}
    assert max(seeks) >= 3000, seeks  # a window that starts at least 30 s in (10 ms frames)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the SDK marks translations deprecated
def test_translation_answers_with_the_translate_task(audio_client: openai.OpenAI) -> None:
    reply = audio_client.audio.translations.create(
        model=WHISPER, file=("clip.wav", wav_bytes(tone(1.0))), response_format="verbose_json"
    )
    assert reply.model_extra is not None and reply.model_extra["task"] == "translate"
    # The text is English whatever was spoken: a language is not the client's to choose (OpenAI takes none).
    refused = httpx.post(
        f"{audio_client.base_url}audio/translations",
        files={"file": ("a.wav", wav_bytes(tone(1.0)))},
        data={"model": WHISPER, "language": "fr"},
        timeout=60,
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "language"


@pytest.mark.parametrize(
    ("data", "param", "says"),
    [
        (b"definitely not audio" * 20, "file", "could not be decoded"),
        (wav_bytes(tone(1.0))[:9000], "file", "truncated"),
        (wav_bytes(tone(MAX_AUDIO_SECONDS + 5.0, amplitude=0.1)[::2], rate=8000), "file", "max_audio_seconds"),
    ],
)
def test_bad_or_too_long_audio_is_a_400(audio_client: openai.OpenAI, data: bytes, param: str, says: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        audio_client.audio.transcriptions.create(model=WHISPER, file=("clip.wav", data))
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == param and says in error["message"]


def test_an_upload_over_the_limit_is_a_413_naming_the_setting(audio_server: ServerProcess) -> None:
    response = httpx.post(
        f"{audio_server.base_url}/v1/audio/transcriptions",
        files={"file": ("big.wav", b"\0" * (MAX_AUDIO_BYTES + 1))},
        data={"model": WHISPER},
        timeout=60,
    )
    assert response.status_code == 413
    assert "max_audio_bytes" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": WHISPER, "response_format": "mp4"}, "response_format"),
        ({"model": WHISPER, "temperature": "3"}, "temperature"),
        ({"model": WHISPER, "timestamp_granularities[]": "word"}, "timestamp_granularities"),
        ({"model": WHISPER, "language": "xx"}, "language"),
        ({"model": WHISPER, "bogus": "1"}, "bogus"),
        ({"model": "tiny-llama"}, "model"),
        ({}, "model"),
    ],
)
def test_bad_fields_are_400s_naming_them(audio_server: ServerProcess, fields: dict[str, str], param: str) -> None:
    response = httpx.post(
        f"{audio_server.base_url}/v1/audio/transcriptions",
        files={"file": ("a.wav", wav_bytes(tone(0.5)))},
        data=fields,
        timeout=120,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_an_unknown_model_is_a_404(audio_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        audio_client.audio.transcriptions.create(model="no-such-whisper", file=("a.wav", wav_bytes(tone(0.5))))


def test_chat_with_the_speech_model_or_with_audio_input_is_a_400(audio_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        audio_client.chat.completions.create(model=WHISPER, messages=[{"role": "user", "content": "hi"}])
    assert "speech-to-text" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        audio_client.chat.completions.create(
            model="tiny-llama",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
                }
            ],
        )
    assert "input_audio" in info.value.message and "/v1/audio/transcriptions" in info.value.message


def test_word_timestamps_come_with_the_word_granularity(audio_client: openai.OpenAI) -> None:
    reply = audio_client.audio.transcriptions.create(
        model=WHISPER,
        file=("clip.wav", wav_bytes(tone(2.0))),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    words = reply.words or []
    assert words and reply.segments is None  # only what was asked for, as OpenAI answers
    assert all(0 <= w.start <= w.end <= 2.0 + 0.02 for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)


def test_the_speech_model_lives_in_the_pool(audio_client: openai.OpenAI, audio_server: ServerProcess) -> None:
    """Loaded on first use with its memory counted, pinned and unloaded by the admin routes like any model."""
    base = audio_server.base_url
    assert httpx.post(f"{base}/admin/models/{WHISPER}/load?pin=true", timeout=120).status_code == 200
    loaded = {m["id"]: m for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}
    assert loaded[WHISPER]["pinned"] and loaded[WHISPER]["memory_bytes"] > 1_000_000
    assert httpx.post(f"{base}/admin/models/{WHISPER}/unload", timeout=60).status_code == 200
    loaded = {m["id"] for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}
    assert WHISPER not in loaded
    reply = audio_client.audio.transcriptions.create(model=WHISPER, file=("a.wav", wav_bytes(tone(0.5))))
    assert isinstance(reply.text, str)
    assert WHISPER in {m["id"] for m in httpx.get(f"{base}/admin/models", timeout=30).json()["data"]}


@pytest.mark.parametrize("kind", ["flac", "mp3", "ogg", "opus", "m4a-aac", "webm"])
def test_compressed_uploads_are_transcribed(audio_client: openai.OpenAI, kind: str) -> None:
    """FLAC, MP3, Ogg Vorbis, Ogg Opus, M4A (AAC) and WebM (Opus) are transcribed whole; cut short they are a 400."""
    from tests.engine.test_audio_containers import encoded

    data = encoded(kind, 3.0)
    reply = audio_client.audio.transcriptions.create(
        model=WHISPER, file=(f"clip.{kind}", data), response_format="verbose_json"
    )
    assert reply.duration == pytest.approx(3.0, abs=0.08)
    with pytest.raises(openai.BadRequestError) as info:
        audio_client.audio.transcriptions.create(model=WHISPER, file=(f"clip.{kind}", data[: len(data) // 2]))
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "file"
