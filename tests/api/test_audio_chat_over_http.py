"""Chat with audio input (OpenAI's input_audio parts) over HTTP: a tiny random-weight Gemma 4 that hears, on a
real server, driven by the openai SDK; text-only models refuse audio with a 400."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_audio import tone, wav_bytes
from mlx_manager.testing.tiny_audio_chat import NAME as HEARS
from mlx_manager.testing.tiny_audio_chat import audio_tokens, write_tiny_audio_chat
from tests.conftest import asset_cache

QUESTION = "What do you hear?"
MAX_AUDIO_BYTES = 400_000  # a 5 s 16-bit WAV is 160 kB


@pytest.fixture(scope="module")
def audio_chat_server(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = write_tiny_audio_chat(asset_cache() / "audio-chat-models")
    args = ["--model-dir", str(folder.parent), "--model-dir", str(tiny_models_dir)]
    env = {"MLX_MANAGER_MAX_AUDIO_SECONDS": "5", "MLX_MANAGER_MAX_AUDIO_BYTES": str(MAX_AUDIO_BYTES)}
    with run_server(tmp_path_factory.mktemp("audio-chat-home"), args, env) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(audio_chat_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{audio_chat_server.base_url}/v1", api_key="unused", max_retries=0, timeout=300)


def audio_part(data: bytes, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


def ask(client: openai.OpenAI, data: bytes | None, model: str = HEARS, fmt: str = "wav", **kwargs: Any) -> Any:
    parts = [audio_part(data, fmt)] if data is not None else []
    messages: Any = [{"role": "user", "content": [*parts, {"type": "text", "text": QUESTION}]}]
    return client.chat.completions.create(
        model=model, messages=messages, **{"max_tokens": 8, "temperature": 0, **kwargs}
    )


def test_greedy_reply_depends_on_the_audio_and_counts_its_tokens(client: openai.OpenAI) -> None:
    low, high = wav_bytes(tone(1.0, 440.0)), wav_bytes(tone(1.0, 880.0))
    text_only = ask(client, None).usage.prompt_tokens
    first, again, other = ask(client, low), ask(client, low), ask(client, high)
    for reply in (first, other):
        assert reply.choices[0].message.content and reply.choices[0].finish_reason == "length"
        # At least <|audio> and <audio|> around one <|audio|> per 40 ms: the processor expanded the clip.
        assert reply.usage.prompt_tokens >= text_only + 2 + audio_tokens(1.0)
    assert first.usage.prompt_tokens == other.usage.prompt_tokens
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.choices[0].message.content != other.choices[0].message.content


def test_longer_audio_is_more_prompt_tokens_and_streams(client: openai.OpenAI) -> None:
    messages: Any = [
        {"role": "user", "content": [audio_part(wav_bytes(tone(2.0))), {"type": "text", "text": QUESTION}]}
    ]
    stream = client.chat.completions.create(
        model=HEARS,
        messages=messages,
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text and usage is not None and usage.completion_tokens == 4
    one_second = ask(client, wav_bytes(tone(1.0)), max_tokens=1).usage.prompt_tokens
    assert usage.prompt_tokens - one_second == audio_tokens(2.0) - audio_tokens(1.0)


def test_a_model_that_cannot_hear_refuses_audio_with_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, wav_bytes(tone(0.5)), model="tiny-llama")
    body: Any = info.value.body
    assert body["code"] == "audio_not_supported" and body["param"] == "messages.0.content.0"
    assert "cannot hear" in info.value.message and "/v1/audio/transcriptions" in info.value.message


@pytest.mark.parametrize(
    ("data", "says"),
    [(b"RIFF\x00\x00", "audio"), (b"not audio at all" * 10, "decoded"), (wav_bytes(tone(6.0)), "max_audio_seconds")],
)
def test_bad_or_too_long_audio_is_a_400_naming_the_part(client: openai.OpenAI, data: bytes, says: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(client, data)
    body: Any = info.value.body
    assert body["param"] == "messages.0.content.0" and says in info.value.message


def test_audio_that_is_not_base64_is_a_400(client: openai.OpenAI) -> None:
    bad: Any = [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%", "format": "wav"}}]}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=HEARS, messages=bad, max_tokens=2)
    assert "base64" in info.value.message


def test_mp3_audio_is_heard_like_the_same_clip_as_wav(client: openai.OpenAI) -> None:
    from mlx_manager.engine.audio.encode import encode

    clip = tone(1.0, 660.0)
    mp3 = ask(client, encode(clip, 16_000, "mp3"), fmt="mp3")
    wav = ask(client, wav_bytes(clip))
    assert mp3.choices[0].message.content and mp3.usage.prompt_tokens == wav.usage.prompt_tokens


def test_audio_over_max_audio_bytes_is_a_413_naming_the_setting(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        ask(client, b"\0" * (MAX_AUDIO_BYTES + 1000))
    assert info.value.status_code == 413 and "max_audio_bytes" in info.value.message
