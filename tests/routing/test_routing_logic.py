"""Rule matching, the circuit breaker's states, least-outstanding balancing and fallback decisions."""

from __future__ import annotations

import random

import pytest

from mlx_manager.routing.balancer import Balancer
from mlx_manager.routing.breaker import CircuitBreaker
from mlx_manager.routing.retry import backoff_seconds, counts_against_backend, should_fall_back
from mlx_manager.routing.rules import Rule, RuleError, first_match


def test_rules_match_exact_glob_and_regex_by_priority_then_age() -> None:
    rules = [
        Rule.create("gpt-*", ["openai"], "glob", priority=1, id=1),
        Rule.create("gpt-4o", ["azure"], "exact", priority=5, id=2),
        Rule.create(r"claude-(opus|sonnet)-\d+", ["anthropic"], "regex", id=3),
        Rule.create("*", ["local"], "glob", priority=-1, id=4),
        Rule.create("gpt-*", ["second"], "glob", priority=1, id=5),
    ]
    assert first_match(rules, "gpt-4o").backends == ("azure",)  # type: ignore[union-attr]
    assert first_match(rules, "gpt-3.5").backends == ("openai",)  # type: ignore[union-attr]
    assert first_match(rules, "claude-opus-4").backends == ("anthropic",)  # type: ignore[union-attr]
    assert first_match(rules, "claude-opus-4x").backends == ("local",)  # type: ignore[union-attr]
    assert first_match(rules[:3], "llama") is None


def test_a_rule_may_rename_the_model_upstream() -> None:
    rule = Rule.create("fast", ["cluster"], remote_model="Qwen/Qwen3-8B")
    assert rule.upstream_model("fast") == "Qwen/Qwen3-8B"
    assert Rule.create("x", ["b"]).upstream_model("x") == "x"


def test_bad_rules_are_refused_when_made() -> None:
    with pytest.raises(RuleError, match="regex"):
        Rule.create("(", ["b"], "regex")
    with pytest.raises(RuleError, match="no backend"):
        Rule.create("x", [])


def test_breaker_opens_after_n_failures_then_half_opens_for_one_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 9.9
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # one probe at a time
    breaker.record_failure()  # the probe failed: open again, cooldown restarts
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0 and breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_balancer_prefers_fewest_outstanding_and_healthy_backends() -> None:
    balancer = Balancer()
    for name in ("a", "a", "b"):
        balancer.begin(name)
    assert balancer.order(["a", "b", "c"]) == ["c", "b", "a"]
    balancer.state("c").healthy = False
    assert balancer.order(["a", "b", "c"])[-1] == "c"  # unhealthy last, still a last resort


def test_balancer_alternates_between_equal_backends() -> None:
    balancer = Balancer()
    chosen = []
    for _ in range(100):
        chosen.append(balancer.order(["a", "b"])[0])
        balancer.begin(chosen[-1])
        balancer.end(chosen[-1])
    assert [chosen.count(n) for n in ("a", "b")] == [50, 50]  # ties go to the least recently chosen


def test_fallback_on_connection_errors_5xx_429_and_404_but_not_on_client_errors() -> None:
    assert should_fall_back(None) and should_fall_back(429) and should_fall_back(503) and should_fall_back(500)
    assert should_fall_back(404)  # this backend lacks the model or the path; the next one may have it
    assert not should_fall_back(400) and not should_fall_back(422) and not should_fall_back(200)
    assert counts_against_backend(None) and counts_against_backend(503) and not counts_against_backend(404)


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(0)
    values = [backoff_seconds(a, base=0.5, cap=2.0, rng=rng) for a in range(10)]
    assert all(0 <= v <= 2.0 for v in values) and len(set(values)) == len(values)
