"""Text-to-speech models (Soprano) on mlx-audio's MLX implementation: load, and speak one sentence at a time on the
model's thread, so a stream sends each sentence as soon as it is made and a client that leaves stops the next token.

mlx-audio is imported only here, when a TTS model loads.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from mlx_manager.engine.load_meter import loading
from mlx_manager.engine.types import ModelInfo

log = logging.getLogger(__name__)

# OpenAI's built-in voice names; a one-voice model answers to each of them (and to "default") with its voice.
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")  # fmt: skip
# A sentence's audio tokens (64 ms each at Soprano's 32 kHz): a model that never says stop ends here.
MAX_TOKENS_PER_SENTENCE = 512


# Longest text given to the model at once: its audio fits the token cap even when spoken slowly.
MAX_SENTENCE_CHARS = 200


def split_long(text: str, limit: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Text in pieces of at most `limit` characters: whole clauses (cut after , ; :) packed together where they fit,
    a longer clause packed by words, a word longer than the limit cut where it must be."""
    pieces: list[str] = []

    def add(unit: str) -> None:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= limit:
            pieces[-1] += " " + unit
        else:
            pieces.append(unit)

    for clause in re.split(r"(?<=[,;:])\s+", text.strip()):
        if len(clause) <= limit:
            add(clause)
            continue
        for word in clause.split():
            for start in range(0, len(word), limit):
                add(word[start : start + limit])
    return [p for p in pieces if p]


def token_cap(sentence: str) -> int:
    """Room for slow speech (about one token a character) without letting a runaway sentence last minutes."""
    return min(MAX_TOKENS_PER_SENTENCE, 32 + 2 * len(sentence))


@dataclass
class Spoken:
    """What one sentence took: its prompt's tokens and the audio tokens it said."""

    input_tokens: int
    output_tokens: int


Emit = Callable[[np.ndarray], None]


class DecodeStream:
    """The audio of a growing run of hidden states, `CHUNK_TOKENS` at a time. Each piece is decoded with `CONTEXT`
    states either side (the Vocos decoder's reach, as Soprano streams), so the pieces join into the whole decode."""

    CHUNK_TOKENS = 16  # about 1 s of speech at 32 kHz
    CONTEXT = 4

    def __init__(self, decoder: Any, token_size: int) -> None:
        self._decoder = decoder
        self._token_size = token_size
        self._states: list[mx.array] = []
        self._done = 0  # the audio between states i and i+1, for i below this, was handed out

    def add(self, state: mx.array) -> np.ndarray | None:
        self._states.append(state)
        ready = len(self._states) - 1 - self.CONTEXT
        return self._piece(ready) if ready - self._done >= self.CHUNK_TOKENS else None

    def finish(self) -> np.ndarray | None:
        return self._piece(len(self._states) - 1) if len(self._states) - 1 > self._done else None

    def _piece(self, upto: int) -> np.ndarray:
        start = max(0, self._done - self.CONTEXT)
        audio = self._decoder(mx.concatenate(self._states[start:], axis=1))[0]
        piece = audio[(self._done - start) * self._token_size : (upto - start) * self._token_size]
        self._done = upto
        return np.clip(np.array(piece.astype(mx.float32), copy=True), -1.0, 1.0)


@dataclass
class TextToSpeechModel:
    info: ModelInfo
    model: Any  # mlx_audio's soprano Model
    memory_bytes: int
    sample_rate: int
    voices: tuple[str, ...]
    turns: Any = None  # speak.TurnQueue, made on the event loop: whose sentence runs next

    def sentences(self, text: str) -> list[str]:
        """Soprano's own split into sentences (short ones merged), each as the prompt the model is given; a
        sentence too long for the token cap is cut at clauses, then words."""
        prompts = [prompt for prompt, _, _ in self.model._preprocess_text([text])]
        head, tail = "[STOP][TEXT]", "[START]"
        out: list[str] = []
        for prompt in prompts:
            if not (prompt.startswith(head) and prompt.endswith(tail)) or len(prompt) <= MAX_SENTENCE_CHARS:
                out.append(prompt)
                continue
            out += [f"{head}{part}{tail}" for part in split_long(prompt[len(head) : -len(tail)])]
        return out

    def speak(self, prompt: str, stop: threading.Event, emit: Emit) -> Spoken:
        """Runs on the model's thread: audio handed to `emit` a piece at a time as it is made; `stop` set (the
        client left) ends it at the next token. As mlx-audio's generate, the audio starts at the first token said
        (the prompt's last state only leads into it)."""
        ids = self.model._tokenize(prompt)
        stream = DecodeStream(self.model.decoder, self.model.config.decoder_config.token_size)
        states = 0
        temperature = 0.3  # Soprano's default; it is trained for sampling, not greedy decoding
        for _, hidden in self.model.stream_generate(ids, max_tokens=token_cap(prompt), temperature=temperature):
            states += 1
            if (piece := stream.add(hidden)) is not None:
                emit(piece)
            if stop.is_set():
                break
        if (piece := stream.finish()) is not None:
            emit(piece)
        return Spoken(int(ids.size), max(states - 1, 0))


def load_tts_model(info: ModelInfo) -> TextToSpeechModel:
    """Runs on the model's own thread, like `load_model`; mlx-audio reads only the folder (no hub fetch)."""
    from mlx_audio.tts.utils import load_model as load_audio_model

    with loading(info, "text-to-speech model") as meter:
        model = load_audio_model(Path(info.path), strict=True, model_type=info.model_type)
        mx.eval(model.parameters())
    memory = meter.memory()
    log.info("Loaded %s (%s, %.1f MB) in %.2fs", info.id, info.family, memory / 1e6, meter.seconds())
    voices = ("default", *OPENAI_VOICES)
    return TextToSpeechModel(info, model, memory or info.size_bytes, int(model.sample_rate), voices)
