"""Least-outstanding-requests balancing over healthy backends whose breaker lets requests through."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from mlx_manager.routing.breaker import CircuitBreaker


@dataclass
class BackendState:
    name: str
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    healthy: bool = True  # set by active health checks; an unhealthy backend leaves the rotation
    outstanding: int = 0
    served: int = 0


class Balancer:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.backends: dict[str, BackendState] = {}
        self._rng = rng or random.Random()

    def state(self, name: str) -> BackendState:
        return self.backends.setdefault(name, BackendState(name))

    def order(self, names: Sequence[str]) -> list[str]:
        """Candidates to try in turn: healthy ones by fewest outstanding requests (ties broken at random), then
        the rest in rule order, so a failing pool still gets a last try rather than an instant error."""
        states = [self.state(n) for n in names]
        healthy = [s for s in states if s.healthy]
        self._rng.shuffle(healthy)
        healthy.sort(key=lambda s: s.outstanding)
        rest = [s for s in states if not s.healthy]
        return [s.name for s in healthy + rest]

    @contextmanager
    def track(self, name: str) -> Iterator[BackendState]:
        state = self.state(name)
        state.outstanding += 1
        try:
            yield state
        finally:
            state.outstanding -= 1
            state.served += 1
