"""Which upstream failures move on to the next backend, and jittered backoff for idempotent retries."""

from __future__ import annotations

import random

# Worth trying elsewhere: the backend is overloaded, broken or restarting. A 4xx is the request's own fault.
FALLBACK_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def should_fall_back(status: int | None) -> bool:
    """`None` means no response at all (connection refused, reset, timeout)."""
    return status is None or status in FALLBACK_STATUSES


def backoff_seconds(attempt: int, base: float = 0.2, cap: float = 5.0, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)], so retries from many clients spread out."""
    return (rng or random).uniform(0.0, min(cap, base * (2**attempt)))
