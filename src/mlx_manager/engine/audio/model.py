"""Speech-to-text models (Whisper) on mlx-audio's MLX implementation: load and transcribe on the model's thread.

mlx-audio is imported only here, when a speech model loads (it is large and pulls transformers' tokenizers).
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlx_manager.engine.audio.types import Job, Segment, Stopped, TranscribeOptions, Transcript, Word
from mlx_manager.engine.discovery import read_json
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.load_meter import loading
from mlx_manager.engine.types import ModelInfo

log = logging.getLogger(__name__)
# The job running on this thread, read by the hooks below (each speech model has its own thread).
_current = threading.local()
# How mlx-audio's verbose long-form loop prints each finished segment of a window.
_SEGMENT_LINE = re.compile(r"\[([\d:.]+) --> ([\d:.]+)\] (.*)", re.DOTALL)


def _job() -> Job | None:
    job: Job | None = getattr(_current, "job", None)
    return job


def _print(*args: object, **kwargs: Any) -> None:
    """mlx-audio's Whisper loop reports a window's final segments only through its verbose print: a streaming
    job takes each text from there (skipping the instantaneous or blank ones the loop then clears)."""
    job = _job()
    if job is None:
        builtins.print(*args, **kwargs)
        return
    match = _SEGMENT_LINE.fullmatch(" ".join(str(a) for a in args))
    if job.on_text is not None and match and match[1] != match[2] and match[3].strip():
        job.on_text(match[3])


def _install_hooks() -> None:
    """Once: a stop check before each decoding pass (so a stopped job ends between windows) and the print above."""
    from mlx_audio.stt.models.whisper import whisper

    if getattr(whisper.Model, "_mlx_manager_hooked", False):
        return
    decode = whisper.Model.decode

    def checked_decode(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = _job()
        if job is not None:
            job.next_pass()
        return decode(self, *args, **kwargs)

    whisper.Model.decode = checked_decode
    whisper.Model._mlx_manager_hooked = True
    whisper.print = _print


@dataclass
class SpeechModel:
    info: ModelInfo
    model: Any  # mlx_audio's whisper Model
    memory_bytes: int
    multilingual: bool
    languages: frozenset[str]
    # Finished transcriptions by outcome: done, cancelled (the client left), expired (time limit); for /metrics.
    outcomes: Counter[str] = field(default_factory=Counter)
    turns: Any = None  # service.TurnQueue, made on the event loop: whose transcription runs next

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions, job: Job | None = None) -> Transcript:
        """Runs on the model's thread. Whisper's own long-form decoding: 30 s windows, each starting where the
        previous one's last complete segment ended, so words cut at a window's edge are decoded again. A `job`
        gets each window's text as it is final and can stop the work between decoding passes."""
        job = job or Job()
        _current.job = job
        try:
            transcript = self._transcribe(audio, options, job)
        except Stopped:
            self.outcomes[job.reason] += 1
            log.info(
                "Transcription on %s stopped (%s) after %d decoding passes of %.1f s of audio",
                self.info.id, job.reason, job.passes, audio.size / 16_000,
            )  # fmt: skip
            raise
        finally:
            _current.job = None
        self.outcomes["done"] += 1
        return transcript

    def _transcribe(self, audio: np.ndarray, options: TranscribeOptions, job: Job) -> Transcript:
        if options.language is not None and options.language not in self.languages:
            raise InvalidRequestError(
                f"language '{options.language[:20]}' is not one '{self.info.id}' knows; use an ISO-639-1 code"
                f" such as {', '.join(sorted(self.languages)[:5])}.",
                param="language",
            )
        language = options.language if self.multilingual else "en"
        # At temperature 0 Whisper falls back to higher temperatures on a repetitive or unlikely window.
        temperature: float | tuple[float, ...] = (
            options.temperature if options.temperature > 0 else (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
        )
        result = self.model.generate(
            mx.array(audio),
            language=language,
            task=options.task if self.multilingual else "transcribe",
            temperature=temperature,
            initial_prompt=options.prompt or None,
            word_timestamps=options.words,
            fp16=self.model.dtype == mx.float16,
            verbose=True if job.on_text is not None else None,  # True: segments reach _print as they are final
        )
        segments = [
            Segment(
                id=i,
                seek=int(s.get("seek", 0)),
                start=float(s["start"]),
                end=float(s["end"]),
                text=str(s["text"]),
                tokens=[int(t) for t in s.get("tokens", [])],
                temperature=float(s.get("temperature", 0.0)),
                avg_logprob=_finite(s.get("avg_logprob")),
                compression_ratio=_finite(s.get("compression_ratio")),
                no_speech_prob=_finite(s.get("no_speech_prob")),
            )
            for i, s in enumerate(result.segments or [])
        ]
        words = [
            Word(str(w["word"]), float(w["start"]), float(w["end"]))
            for s in result.segments or []
            for w in s.get("words") or []
        ]
        from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES

        code = str(result.language or language or "en")
        return Transcript(
            text=str(result.text).strip(),
            language=code,
            language_name=LANGUAGES.get(code, code),
            duration=audio.size / 16_000,
            segments=segments,
            words=words,
        )


def _finite(value: object) -> float:
    number = float(value) if isinstance(value, (int, float)) else 0.0
    return number if np.isfinite(number) else 0.0


def _weights(folder: Path) -> dict[str, mx.array]:
    weights: dict[str, mx.array] = {}
    for path in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("weights.npz")):
        weights.update(mx.load(str(path)))  # type: ignore[arg-type]
    if not weights:
        raise ValueError("no weights (*.safetensors or weights.npz)")
    return weights


def load_speech_model(info: ModelInfo) -> SpeechModel:
    """Runs on the model's own thread, like `load_model`. Half-precision weights run in float32 on the CPU."""
    from mlx_audio.stt.models.whisper.tokenizer import LANGUAGES
    from mlx_audio.stt.models.whisper.whisper import Model, ModelDimensions

    _install_hooks()

    folder = Path(info.path)
    with loading(info, "speech model") as meter:
        config = read_json(folder / "config.json")
        quant = config.get("quantization")
        weights = _weights(folder)
        stored = next((v.dtype for v in weights.values() if v.dtype in (mx.float16, mx.bfloat16)), mx.float32)
        dtype = mx.float16 if stored != mx.float32 and mx.default_device() == mx.gpu else mx.float32
        model = Model(ModelDimensions.from_dict(config), dtype)
        model = Model.post_load_hook(model, folder)
        if getattr(model, "_processor", None) is None:
            raise ValueError("no Whisper tokenizer files (tokenizer.json / vocab.json and preprocessor config)")
        weights = model.sanitize(weights)
        if isinstance(quant, dict):
            nn.quantize(
                model,
                group_size=int(quant.get("group_size", 64)),
                bits=int(quant.get("bits", 4)),
                class_predicate=lambda p, m: isinstance(m, (nn.Linear, nn.Embedding)) and f"{p}.scales" in weights,
            )
        model.load_weights(list(weights.items()), strict=True)
        mx.eval(model.parameters())
    memory = meter.memory()
    multilingual = bool(model.is_multilingual)
    languages = frozenset(list(LANGUAGES)[: model.num_languages]) if multilingual else frozenset({"en"})
    log.info("Loaded %s (whisper, %.1f MB) in %.2fs", info.id, memory / 1e6, meter.seconds())
    return SpeechModel(info, model, memory or info.size_bytes, multilingual, languages)
