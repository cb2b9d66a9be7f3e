"""Soprano's audio streamed a piece at a time is the audio decoded whole (tiny random-weight model, no server)."""

from __future__ import annotations

import threading

import mlx.core as mx
import numpy as np
import pytest

from mlx_manager.engine.audio.tts import (
    MAX_SENTENCE_CHARS,
    MAX_TOKENS_PER_SENTENCE,
    DecodeStream,
    TextToSpeechModel,
    load_tts_model,
    token_cap,
)
from mlx_manager.engine.discovery import inspect_model
from mlx_manager.testing.tiny_tts import write_tiny_soprano
from tests.conftest import asset_cache


@pytest.fixture(scope="module")
def tts() -> TextToSpeechModel:
    folder = write_tiny_soprano(asset_cache() / "tts-models" / "tiny-soprano")
    return load_tts_model(inspect_model(folder, "tiny-soprano", "folder"))


@pytest.mark.parametrize("states", [1, 2, 5, 21, 22, 60])
def test_pieces_join_into_the_whole_decode(tts: TextToSpeechModel, states: int) -> None:
    mx.random.seed(states)
    hidden = mx.random.normal((1, states, tts.model.config.hidden_size))
    stream = DecodeStream(tts.model.decoder, 2048)
    pieces = [p for i in range(states) if (p := stream.add(hidden[:, i : i + 1])) is not None]
    if (tail := stream.finish()) is not None:
        pieces.append(tail)
    if states < 2:
        assert not pieces
        return
    whole = np.array(tts.model.decoder(hidden)[0])
    joined = np.concatenate(pieces)
    assert joined.size == whole.size == (states - 1) * 2048
    np.testing.assert_allclose(joined, np.clip(whole, -1, 1), atol=1e-6)
    # A piece each time CHUNK_TOKENS more have CONTEXT states after them, then the rest.
    early = max(0, states - 1 - DecodeStream.CONTEXT) // DecodeStream.CHUNK_TOKENS
    assert len(pieces) == early + (states - 1 > early * DecodeStream.CHUNK_TOKENS)


def test_speak_hands_out_pieces_while_it_runs_and_stops_when_told(tts: TextToSpeechModel) -> None:
    prompt = tts.sentences("Hello there, this is a test.")[0]
    pieces: list[np.ndarray] = []
    spoken = tts.speak(prompt, threading.Event(), pieces.append)
    assert spoken.output_tokens == token_cap(prompt)  # the tiny model never says stop
    assert len(pieces) > 2 and sum(p.size for p in pieces) == spoken.output_tokens * 2048
    stop = threading.Event()
    stopped: list[np.ndarray] = []

    def emit(piece: np.ndarray) -> None:
        stopped.append(piece)
        stop.set()  # the client left after the first piece

    short = tts.speak(prompt, stop, emit)
    assert short.output_tokens < spoken.output_tokens // 2


def test_a_sentence_too_long_for_the_token_cap_is_cut_at_clauses_then_words(tts: TextToSpeechModel) -> None:
    text = "First part, " + " ".join(f"word{i}" for i in range(300))  # about 2000 characters, no full stop
    prompts = tts.sentences(text)
    inner = [p.removeprefix("[STOP][TEXT]").removesuffix("[START]") for p in prompts]
    assert len(prompts) > 5 and all(len(t) <= MAX_SENTENCE_CHARS for t in inner)
    from mlx_audio.tts.models.soprano import clean_text

    assert " ".join(inner).split() == clean_text(text).split()  # Soprano's cleaning: lower case, numbers said
    assert all(token_cap(p) < MAX_TOKENS_PER_SENTENCE for p in prompts)  # none is cut short by the cap
