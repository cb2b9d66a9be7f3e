"""Routing rules: a requested model name (exact, glob or regex) to an ordered list of backends."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import regex  # `re`'s syntax, plus a time limit per match

log = logging.getLogger(__name__)
MatchType = Literal["exact", "glob", "regex"]
# Rules are matched on the event loop: a pattern that backtracks catastrophically ((a+)+b on "aaaa…") gives up
# after this long and counts as no match, instead of stalling every request and /health.
REGEX_TIMEOUT_SECONDS = 0.02


class RuleError(ValueError):
    """A rule that can never work (a bad regex, no backends)."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    backends: tuple[str, ...]
    match_type: MatchType = "exact"
    priority: int = 0
    remote_model: str | None = None  # the name to send upstream; None keeps the requested one
    id: int = 0
    _regex: regex.Pattern[str] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def create(
        cls,
        pattern: str,
        backends: Sequence[str],
        match_type: MatchType = "exact",
        priority: int = 0,
        remote_model: str | None = None,
        id: int = 0,
    ) -> Rule:
        if not backends:
            raise RuleError(f"Rule {pattern!r} names no backend.")
        compiled = None
        if match_type == "regex":
            try:
                compiled = regex.compile(pattern)
            except regex.error as exc:
                raise RuleError(f"Rule pattern {pattern!r} is not a valid regex: {exc}") from exc
        return cls(pattern, tuple(backends), match_type, priority, remote_model, id, compiled)

    def matches(self, model: str) -> bool:
        if self.match_type == "exact":
            return model == self.pattern
        if self.match_type == "glob":
            return fnmatch.fnmatchcase(model, self.pattern)
        assert self._regex is not None
        try:
            return self._regex.fullmatch(model, timeout=REGEX_TIMEOUT_SECONDS) is not None
        except TimeoutError:
            log.warning(
                "Routing rule %s: pattern %r gave up after %.0f ms on a model name of %d characters (no match);"
                " it backtracks catastrophically, rewrite it",
                self.id,
                self.pattern,
                REGEX_TIMEOUT_SECONDS * 1000,
                len(model),
            )
            return False

    def upstream_model(self, model: str) -> str:
        return self.remote_model or model


def first_match(rules: Iterable[Rule], model: str) -> Rule | None:
    """The highest-priority rule matching `model`; among equal priorities the one created first."""
    ordered = sorted(rules, key=lambda r: (-r.priority, r.id))
    return next((r for r in ordered if r.matches(model)), None)
