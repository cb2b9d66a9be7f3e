"""Text-to-speech models (Soprano) on mlx-audio's MLX implementation: load, and speak one sentence at a time on the
model's thread, so a stream sends each sentence as soon as it is made and a client that leaves stops the next token.

mlx-audio is imported only here, when a TTS model loads.
"""

from __future__ import annotations

import logging
import threading
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


def token_cap(sentence: str) -> int:
    """Room for slow speech (about one token a character) without letting a runaway sentence last minutes."""
    return min(MAX_TOKENS_PER_SENTENCE, 32 + 2 * len(sentence))


@dataclass
class Spoken:
    """One sentence's audio (float32 mono at the model's rate) and the tokens it took."""

    samples: np.ndarray
    input_tokens: int
    output_tokens: int


@dataclass
class TextToSpeechModel:
    info: ModelInfo
    model: Any  # mlx_audio's soprano Model
    memory_bytes: int
    sample_rate: int
    voices: tuple[str, ...]

    def sentences(self, text: str) -> list[str]:
        """Soprano's own split into sentences (short ones merged), each as the prompt the model is given."""
        return [prompt for prompt, _, _ in self.model._preprocess_text([text])]

    def speak(self, prompt: str, stop: threading.Event) -> Spoken:
        """Runs on the model's thread; `stop` set (the client left) ends it at the next token."""
        ids = self.model._tokenize(prompt)
        states: list[mx.array] = []
        temperature = 0.3  # Soprano's default; it is trained for sampling, not greedy decoding
        for _, hidden in self.model.stream_generate(ids, max_tokens=token_cap(prompt), temperature=temperature):
            states.append(hidden)
            if stop.is_set():
                break
        if len(states) < 2:  # only the prompt's last state: nothing was said
            return Spoken(np.zeros(0, np.float32), int(ids.size), 0)
        audio = self.model.decoder(mx.concatenate(states, axis=1))[0]
        # As mlx-audio's generate: the first state is the prompt's, its audio is dropped.
        token_size = self.model.config.decoder_config.token_size
        audio = audio[-(len(states) - 1) * token_size :]
        samples = np.array(audio.astype(mx.float32), copy=True)
        return Spoken(np.clip(samples, -1.0, 1.0), int(ids.size), len(states) - 1)


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
