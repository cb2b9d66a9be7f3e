"""Stop strings matched across token boundaries, never emitted."""

from __future__ import annotations


class StopMatcher:
    """Buffers text that could still be the start of a stop string and releases the rest."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.matched: str | None = None  # the stop string that ended the text, once one has
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string was hit)."""
        if not self.stops:
            return text, False
        buffer = self._pending + text
        found = [(i, -len(s), s) for s in self.stops if (i := buffer.find(s)) >= 0]
        if found:
            hit, _, self.matched = min(found)  # the earliest; of those starting together, the longest
            self._pending = ""
            return buffer[:hit], True
        hold = self._partial_suffix(buffer)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], False

    def flush(self) -> str:
        """Text still held back when generation ends for another reason."""
        text, self._pending = self._pending, ""
        return text

    def _partial_suffix(self, buffer: str) -> int:
        # Longest suffix of the buffer that is a proper prefix of some stop string.
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best
