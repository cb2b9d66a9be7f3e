"""Voice in the chat, in Chromium with a fake microphone (a WAV file played as the capture device): the microphone
button records, the tiny Whisper's transcription lands in the message box; a reply's Play button asks the tiny
Soprano to speak it and an <audio> element plays the WAV that came back. Without speech models neither shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_audio import tone, wav_bytes, write_tiny_whisper
from mlx_manager.testing.tiny_tts import write_tiny_soprano
from tests.conftest import asset_cache
from tests.web.conftest import PASSWORD, chromium
from tests.web.test_a11y_ui import AXE, _serious

MODEL = "tiny-llama"
WHISPER = "tiny-whisper"
TTS = "tiny-soprano"


@pytest.fixture(scope="module")
def voice_browser(playwright: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Chromium whose microphone is a 2 s tone from a file, granted without a prompt."""
    capture = tmp_path_factory.mktemp("mic") / "mic.wav"
    capture.write_bytes(wav_bytes(tone(2.0, rate=48_000), rate=48_000))
    media = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
    with chromium(
        playwright, *media, f"--use-file-for-fake-audio-capture={capture}", "--autoplay-policy=no-user-gesture-required"
    ) as b:
        yield b


@pytest.fixture(scope="module")
def srv(ui_built: Path, tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    soprano = write_tiny_soprano(asset_cache() / "tts-models" / TTS)
    whisper = write_tiny_whisper(asset_cache() / "audio-models" / WHISPER)
    args = ["--model-dir", str(tiny_models_dir), "--model-dir", str(soprano.parent), "--model-dir", str(whisper.parent)]
    with run_server(tmp_path_factory.mktemp("voice-ui"), args) as server:
        r = httpx.post(f"{server.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
        assert r.status_code == 201, r.text
        yield server


@pytest.fixture
def page(voice_browser: Any, srv: ServerProcess) -> Iterator[Any]:
    context = voice_browser.new_context(base_url=srv.base_url, viewport={"width": 1280, "height": 800})
    context.add_init_script(path=AXE)  # axe-core, for the accessibility check with both buttons shown
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.set_default_timeout(60_000)
    page.goto("/login")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.get_by_role("heading", name="Dashboard").wait_for()
    yield page
    context.close()
    assert not problems, f"browser errors (a CSP violation shows here): {problems}"


def test_the_microphone_puts_the_transcription_in_the_message_box(page: Any, srv: ServerProcess) -> None:
    page.goto("/chat")
    page.get_by_label("Model or profile").select_option(MODEL)
    mic = page.get_by_role("button", name="Microphone")
    mic.click()
    page.get_by_role("button", name="Stop recording").wait_for()
    page.wait_for_timeout(1500)  # a second and a half of the fake microphone's tone
    with (
        page.expect_request("**/v1/audio/transcriptions") as sent,
        page.expect_response("**/v1/audio/transcriptions") as got,
    ):
        page.get_by_role("button", name="Stop recording").click()
    assert sent.value.headers["content-type"].startswith("multipart/form-data")
    assert got.value.status == 200
    text = got.value.json()["text"].strip()
    assert text  # the tiny Whisper's (random) words for the recorded tone
    mic.wait_for()  # idle again
    box = page.get_by_label("Message", exact=True)
    page.wait_for_function("t => document.querySelector('#prompt').value === t", arg=text)
    assert box.input_value() == text
    # The server decoded the browser's WAV and ran the tiny Whisper on it.
    assert f"POST /v1/audio/transcriptions 200 {WHISPER}" in srv.log_path.read_text(errors="replace")


def test_play_speaks_a_reply_and_the_audio_element_plays_it(page: Any) -> None:
    page.goto("/chat")
    page.get_by_label("Model or profile").select_option(MODEL)
    page.get_by_role("button", name="Options").click()
    page.get_by_label("Max tokens").fill("8")
    page.get_by_label("Message", exact=True).fill("Say something")
    with page.expect_response("**/v1/chat/completions") as streamed:
        page.get_by_role("button", name="Send").click()
    page.get_by_test_id("stats").first.wait_for()
    # The reply as the model wrote it (its page shows it as Markdown, which may fold its line breaks).
    reply = "".join(
        (choice["delta"].get("content") or "")
        for line in streamed.value.text().splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
    ).strip()
    assert reply
    with page.expect_response("**/v1/audio/speech") as got:
        page.get_by_role("button", name="Play").click()
    assert got.value.status == 200 and got.value.headers["content-type"].startswith("audio/wav")
    request = got.value.request.post_data_json
    assert request["model"] == TTS and request["response_format"] == "wav" and request["input"].strip() == reply
    # The element holds the WAV that came back and is playing it (or has played it to the end).
    assert page.locator("[data-testid=reply-audio]").count() == 1  # on the reply only
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=reply-audio]');"
        " return a && a.src.startsWith('blob:') && a.readyState >= 2 && a.duration > 0 && (!a.paused || a.ended) }"
    )
    assert page.evaluate("() => document.querySelector('[data-testid=reply-audio]').error") is None
    # The microphone, Play and the audio player pass the checks every page does (tests/web/test_a11y_ui.py).
    page.get_by_role("button", name="Microphone").wait_for()
    assert _serious(page) == []


def test_without_a_speech_model_there_is_no_microphone(
    voice_browser: Any, tiny_models_dir: Path, tmp_path: Path
) -> None:
    """A server with text models only: the composer has no microphone button."""
    with run_server(tmp_path / "plain", ["--model-dir", str(tiny_models_dir)]) as s:
        httpx.post(f"{s.base_url}/api/auth/register", json={"username": "admin", "password": PASSWORD})
        context = voice_browser.new_context(base_url=s.base_url)
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in", exact=True).click()
        page.get_by_role("heading", name="Dashboard").wait_for()
        page.goto("/chat")
        page.get_by_role("button", name="Send").wait_for()
        assert page.get_by_role("button", name="Microphone").count() == 0
        context.close()
