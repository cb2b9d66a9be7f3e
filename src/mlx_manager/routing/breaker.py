"""A circuit breaker per backend: closed, open after N failures in a row, half-open for one probe after a cooldown."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    cooldown_seconds: float = 30.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    state: State = "closed"
    failures: int = 0
    opened_at: float = 0.0
    _probing: bool = False

    def allow(self) -> bool:
        """Whether a request may go to this backend now; in half-open only one probe at a time."""
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown_seconds:
            self.state, self._probing = "half_open", False
        if self.state == "closed":
            return True
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self.state, self.failures, self._probing = "closed", 0, False

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.failure_threshold:
            self.state, self.opened_at, self._probing = "open", self.clock(), False
