"""Least-outstanding-requests balancing over healthy backends whose breaker lets requests through."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
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
    def __init__(self, new_breaker: Callable[[], CircuitBreaker] = CircuitBreaker) -> None:
        self.backends: dict[str, BackendState] = {}
        self._new_breaker = new_breaker
        self._picks = itertools.count()

    def state(self, name: str) -> BackendState:
        state = self.backends.get(name)
        if state is None:
            state = self.backends[name] = BackendState(name, self._new_breaker())
        return state

    def order(self, names: Sequence[str]) -> list[str]:
        """Candidates to try in turn: healthy ones by fewest outstanding requests (ties: least recently chosen,
        so equal backends alternate), then the rest in rule order, so a failing pool still gets a last try."""
        states = [self.state(n) for n in names]
        healthy = sorted((s for s in states if s.healthy), key=lambda s: (s.outstanding, s.last_pick))
        rest = [s for s in states if not s.healthy]
        return [s.name for s in healthy + rest]

    def begin(self, name: str) -> BackendState:
        """A request goes to `name`: it counts as outstanding until `end`."""
        state = self.state(name)
        state.last_pick = next(self._picks)
        state.outstanding += 1
        return state

    def end(self, name: str) -> None:
        self.state(name).outstanding -= 1
