"""What a transcription is asked and answers (no MLX here: the API reads these)."""

from __future__ import annotations

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
