"""What a transcription is asked and answers (no MLX here: the API reads these)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class TranscribeOptions:
    task: Task = "transcribe"
    language: str | None = None  # None: detected (multilingual models) or English
    prompt: str | None = None
    temperature: float = 0.0
    words: bool = False  # word timestamps (cross-attention alignment)


@dataclass
class Segment:
    id: int
    seek: int  # the 10 ms frame its window started at
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass
class Word:
    word: str
    start: float
    end: float


@dataclass
class Transcript:
    text: str
    language: str  # ISO-639-1 code
    language_name: str  # as OpenAI's verbose_json says it: "english"
    duration: float
    segments: list[Segment] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)


class Stopped(Exception):
    """Raised on the model's thread when a transcription was told to stop (client gone, time limit)."""


@dataclass
class Job:
    """One running transcription, shared by the event loop and the model's thread: text out as each 30 s window's
    segments are final (`on_text`, called on the model's thread), a stop asked for in, checked before each pass."""

    on_text: Callable[[str], None] | None = None
    on_start: Callable[[], object] | None = None  # called on the event loop when the model takes it up
    reason: str = ""  # why it was stopped: "cancelled" (the client left) or "expired" (time limit)
    passes: int = 0  # decoding passes started (one per window, more where Whisper retried a window)
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.reason = reason
            self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def next_pass(self) -> None:
        if self._stop.is_set():
            raise Stopped(self.reason)
        self.passes += 1
