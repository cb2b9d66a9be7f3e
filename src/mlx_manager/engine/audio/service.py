"""Transcription requests against a loaded speech model: decode the upload, wait for the model's turn (priority,
then arrival), run on the model's thread, and stop the work there when the caller goes away."""

from __future__ import annotations

import asyncio
import heapq
import itertools

from mlx_manager.engine.audio.decode import decode_audio
from mlx_manager.engine.audio.model import SpeechModel
from mlx_manager.engine.audio.tts import TextToSpeechModel
from mlx_manager.engine.audio.types import Job, TranscribeOptions, Transcript
from mlx_manager.engine.errors import QueueTimeoutError
from mlx_manager.engine.pool import ModelRunner


class TurnQueue:
    """One transcription at a time per model; the waiting ones go lowest priority first, then in arrival order."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiting if not f.done())

    async def acquire(self, priority: int) -> None:
        if not self._busy:
            self._busy = True
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():  # handed the turn just as the caller left: pass it on
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)
                return
        self._busy = False


async def transcribe(
    runner: ModelRunner,
    model: SpeechModel,
    data: bytes,
    options: TranscribeOptions,
    max_seconds: float | None,
    *,
    job: Job | None = None,
    priority: int = 0,
    queue_seconds: float = 0,
) -> Transcript:
    """Waits at most `queue_seconds` (0: no limit) for the model's turn, then a 503. Cancelling the caller stops
    the work on the model's thread before its next decoding pass (job reason "cancelled" unless already set)."""
    audio = await asyncio.to_thread(decode_audio, data, max_seconds)
    job = job or Job()
    turns = turns_of(model)
    try:
        await asyncio.wait_for(turns.acquire(priority), queue_seconds or None)
    except TimeoutError:
        raise QueueTimeoutError(
            f"The transcription waited {queue_seconds:.0f}s for '{model.info.id}' (queue_timeout_seconds). The"
            " server is busy; retry shortly.",
            retry_after=max(1, min(30, int(queue_seconds // 10))),
        ) from None
    try:
        if job.on_start is not None:
            job.on_start()
        work = asyncio.ensure_future(runner.run(model.transcribe, audio, options, job))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:
            job.stop("cancelled")
            await asyncio.wait({work})  # the turn is the model thread's until it has stopped
            if not work.cancelled():
                work.exception()  # Stopped, as asked (or whatever ended it first): retrieved, not logged again
            raise
    finally:
        turns.release()


def turns_of(model: SpeechModel | TextToSpeechModel) -> TurnQueue:
    """The model's turn queue (speech to text and text to speech alike), made on the event loop at first use: the
    model is built on its own thread."""
    if model.turns is None:
        model.turns = TurnQueue()
    assert isinstance(model.turns, TurnQueue)
    return model.turns
