"""Least-outstanding-requests balancing over healthy backends whose breaker lets requests through."""

from __future__ import annotations

import itertools
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
    last_pick: int = -1  # when it was last chosen (a counter): ties go to the one chosen longest ago


class Balancer:
    def __init__(self) -> None:
        self.backends: dict[str, BackendState] = {}
        self._picks = itertools.count()

    def state(self, name: str) -> BackendState:
        return self.backends.setdefault(name, BackendState(name))

    def order(self, names: Sequence[str]) -> list[str]:
        """Candidates to try in turn: healthy ones by fewest outstanding requests (ties: least recently chosen,
        so equal backends alternate), then the rest in rule order, so a failing pool still gets a last try."""
        states = [self.state(n) for n in names]
        healthy = sorted((s for s in states if s.healthy), key=lambda s: (s.outstanding, s.last_pick))
        rest = [s for s in states if not s.healthy]
        return [s.name for s in healthy + rest]

    def picked(self, name: str) -> None:
        self.state(name).last_pick = next(self._picks)

    @contextmanager
    def track(self, name: str) -> Iterator[BackendState]:
        state = self.state(name)
        self.picked(name)
        state.outstanding += 1
        try:
            yield state
        finally:
            state.outstanding -= 1
            state.served += 1
