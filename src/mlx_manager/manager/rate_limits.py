"""Rate limits on signing in, registering and making API keys, per client address and per username, with the
`limits` package (moving windows, kept in memory: a restart forgets them). Past a limit the caller gets a 429 with
Retry-After before any password is hashed.

Sign-ins count failures only, so people who type their password right are never held up; attempts still in flight
count too, so a burst of concurrent wrong passwords cannot all slip past the check before the first one fails.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from mlx_manager.config import DEFAULT_KEYS_RATE, DEFAULT_LOGIN_RATE, DEFAULT_REGISTER_RATE
from mlx_manager.manager.errors import ManagerError


class RateLimited(ManagerError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, "rate_limited")
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


def parse(spec: str) -> list[RateLimitItem]:
    """'10/minute;100/hour' to its limits; a ValueError names what is wrong."""
    return parse_many(spec)


class Limit:
    """One limit (possibly several windows) applied to each of a set of keys, e.g. a client and a username."""

    def __init__(self, spec: str, what: str) -> None:
        self.items = parse(spec)
        self.what = what
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()

    def _retry_after(self, keys: tuple[str, ...]) -> int:
        now = time.time()
        waits = [
            self._limiter.get_window_stats(item, key).reset_time - now
            for item in self.items
            for key in keys
            if not self._limiter.test(item, key, cost=self._in_flight[key] + 1)
        ]
        return max(1, math.ceil(max(waits, default=1)))

    def _refuse(self, keys: tuple[str, ...]) -> RateLimited:
        wait = self._retry_after(keys)
        return RateLimited(f"Too many {self.what}; try again in {wait} seconds.", wait)

    def hit(self, *keys: str) -> None:
        """Count one attempt against every key, or refuse it (counting nothing) if any key is at its limit."""
        with self._lock:
            if not all(self._limiter.test(item, key) for item in self.items for key in keys):
                raise self._refuse(keys)
            for item in self.items:
                for key in keys:
                    self._limiter.hit(item, key)

    @contextmanager
    def attempt(self, *keys: str, failures: tuple[type[BaseException], ...] = (Exception,)) -> Iterator[None]:
        """An attempt that counts only if it fails (raises one of `failures`); refused when failures plus
        attempts in flight would pass a limit."""
        with self._lock:
            if not all(
                self._limiter.test(item, key, cost=self._in_flight[key] + 1) for item in self.items for key in keys
            ):
                raise self._refuse(keys)
            self._in_flight.update(keys)
        failed = False
        try:
            yield
        except failures:
            failed = True
            raise
        finally:
            with self._lock:
                self._in_flight.subtract(keys)
                self._in_flight += Counter()  # drop the zeros
                if failed:
                    for item in self.items:
                        for key in keys:
                            self._limiter.hit(item, key)


class AuthLimits:
    """The limits of one server."""

    def __init__(
        self, login: str = DEFAULT_LOGIN_RATE, register: str = DEFAULT_REGISTER_RATE, keys: str = DEFAULT_KEYS_RATE
    ) -> None:
        self.login = Limit(login, "failed sign-ins")
        self.register = Limit(register, "registrations")
        self.keys = Limit(keys, "new API keys")
