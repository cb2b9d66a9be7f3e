"""A speech request against a loaded TTS model: checked before anything runs, then spoken sentence by sentence on
the model's thread, each sentence's audio handed on as soon as it is made. No HTTP here."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from mlx_manager.engine.audio.encode import resample
from mlx_manager.engine.audio.service import turns_of
from mlx_manager.engine.audio.tts import Spoken, TextToSpeechModel
from mlx_manager.engine.errors import InvalidRequestError, QueueTimeoutError
from mlx_manager.engine.pool import ModelRunner

MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range


@dataclass(frozen=True)
class SpeakOptions:
    voice: str
    speed: float = 1.0
    max_chars: int | None = None  # the server's max_speech_chars
    priority: int = 0  # lower goes first among requests waiting for the model


def change_speed(samples: np.ndarray, speed: float) -> np.ndarray:
    """Faster or slower by resampling (the pitch moves with it: Soprano has no duration control of its own)."""
    return resample(samples, 1_000_000, round(1_000_000 / speed))


def check(model: TextToSpeechModel, text: str, options: SpeakOptions) -> list[str]:
    """The sentences to speak, or a 400 naming the field (and the setting) that is wrong."""
    if not text.strip():
        raise InvalidRequestError("input must not be empty.", param="input")
    if options.max_chars is not None and len(text) > options.max_chars:
        raise InvalidRequestError(
            f"input is {len(text)} characters, more than the server's limit of {options.max_chars} (max_speech_chars).",
            param="input",
        )
    if options.voice not in model.voices:
        raise InvalidRequestError(
            f"voice '{options.voice[:40]}' is not one of '{model.info.id}': {', '.join(model.voices)}.",
            param="voice",
        )
    if not MIN_SPEED <= options.speed <= MAX_SPEED:
        raise InvalidRequestError(f"speed must be between {MIN_SPEED} and {MAX_SPEED}.", param="speed")
    sentences = model.sentences(text)
    if not sentences:
        raise InvalidRequestError("input has nothing to speak.", param="input")
    return sentences


class Speech:
    """Audio pieces (float32 mono at `sample_rate`) as the model makes them. Each sentence waits for the model's turn
    (the queue transcriptions use: lower priority first, then arrival), so concurrent requests take turns by
    sentence; `release` frees the pool's hold on the model when it is done."""

    def __init__(
        self,
        runner: ModelRunner,
        model: TextToSpeechModel,
        sentences: list[str],
        options: SpeakOptions,
        release: Callable[[], None],
    ) -> None:
        self.sample_rate = model.sample_rate
        self.input_tokens = 0
        self.output_tokens = 0
        self.expired = False  # stopped at the time limit
        self._runner, self._model, self._sentences, self._options = runner, model, sentences, options
        self._release: Callable[[], None] | None = release
        self._stop = threading.Event()
        self._turns = turns_of(model)
        self._holding = False
        self._timer: asyncio.TimerHandle | None = None

    async def start(self, queue_seconds: float = 0, time_limit: float = 0) -> None:
        """Waits at most `queue_seconds` (0: no limit) for the model's first turn, else a 503; from then on, past
        `time_limit` seconds (0: none) the speech stops at the next token, `expired` set."""
        try:
            await asyncio.wait_for(self._turns.acquire(self._options.priority), queue_seconds or None)
        except TimeoutError:
            self.close()
            raise QueueTimeoutError(
                f"The speech request waited {queue_seconds:.0f}s for '{self._model.info.id}' (queue_timeout_seconds)."
                " The server is busy; retry shortly.",
                retry_after=max(1, min(30, int(queue_seconds // 10))),
            ) from None
        except BaseException:
            self.close()
            raise
        self._holding = True
        if time_limit > 0:
            self._timer = asyncio.get_running_loop().call_later(time_limit, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self._stop.set()

    def cancel(self) -> None:
        """The client left: the sentence being spoken ends at its next token, no other starts."""
        self._stop.set()

    def _let_go(self) -> None:
        if self._holding:
            self._holding = False
            self._turns.release()

    def close(self) -> None:
        self._stop.set()
        self._let_go()
        if self._timer is not None:
            self._timer.cancel()
        if self._release is not None:
            release, self._release = self._release, None
            release()

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """Each piece of audio as the model's thread makes it, sentence after sentence (`start` first)."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[np.ndarray] = asyncio.Queue()

        def emit(samples: np.ndarray) -> None:  # on the model's thread
            loop.call_soon_threadsafe(pieces.put_nowait, samples)

        task: asyncio.Future[Spoken] | None = None
        try:
            for sentence in self._sentences:
                if not self._holding:
                    await self._turns.acquire(self._options.priority)
                    self._holding = True
                if self._stop.is_set():
                    return
                task = asyncio.ensure_future(self._runner.run(self._model.speak, sentence, self._stop, emit))
                while not task.done() or not pieces.empty():
                    if pieces.empty():
                        getter = asyncio.ensure_future(pieces.get())
                        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                        if not getter.done():
                            getter.cancel()
                            continue
                        samples = getter.result()
                    else:  # the model's pieces arrive before its result does
                        samples = pieces.get_nowait()
                    yield change_speed(samples, self._options.speed)
                spoken = task.result()
                self.input_tokens += spoken.input_tokens
                self.output_tokens += spoken.output_tokens
                self._let_go()  # the next sentence queues again: others' sentences may go first
        finally:
            if task is not None and not task.done():
                task.cancel()
            self.close()
