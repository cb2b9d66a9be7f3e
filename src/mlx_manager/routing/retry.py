"""Which upstream failures move on to the next backend, and jittered backoff for idempotent retries."""

from __future__ import annotations

import random

# Worth trying elsewhere: the backend is overloaded, broken or restarting, or (404) lacks this model or path.
# Any other 4xx is the request's own fault.
FALLBACK_STATUSES = frozenset({404, 408, 429, 500, 502, 503, 504})


# Failures after which the backend surely did no work, so sending the same request again is safe.
IDEMPOTENT_STATUSES = frozenset({429, 503})


def safe_to_retry(status: int | None) -> bool:
    """No answer (connection refused/reset before a response) or an explicit "not now" from the backend."""
    return status is None or status in IDEMPOTENT_STATUSES


def should_fall_back(status: int | None) -> bool:
    """`None` means no response at all (connection refused, reset, timeout)."""
    return status is None or status in FALLBACK_STATUSES


def counts_against_backend(status: int | None) -> bool:
    """Whether the breaker counts it: a 404 says the backend is up but lacks this model or path (another rule's
    model may be there), and the health check already sends a backend with a wrong base URL to the end."""
    return status != 404


def backoff_seconds(attempt: int, base: float = 0.2, cap: float = 5.0, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)], so retries from many clients spread out."""
    return (rng or random).uniform(0.0, min(cap, base * (2**attempt)))
