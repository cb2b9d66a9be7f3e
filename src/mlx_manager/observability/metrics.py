"""Prometheus metrics: request counters and latency histograms, plus engine state read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlx_manager.engine.step_budget import prefill_peak
from mlx_manager.engine.types import Usage

if TYPE_CHECKING:
    from mlx_manager.engine.engine import Engine
    from mlx_manager.engine.pool import PoolEntry
    from mlx_manager.engine.scheduler import Scheduler
    from mlx_manager.routing.router import Router

# The kinds of family a per-model part metric is.
Family = CounterMetricFamily | GaugeMetricFamily
_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ITL = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)


class Metrics:
    """One registry per app (tests run several); the engine feeds token timing, the HTTP layer the rest."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mlx_manager_requests",
            "HTTP requests by endpoint, model and status.",
            ["endpoint", "model", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "mlx_manager_request_duration_seconds", "End-to-end HTTP request latency.", ["endpoint", "model"],
            buckets=_LATENCY, registry=r,
        )  # fmt: skip
        self.errors = Counter("mlx_manager_errors", "Error responses by error type.", ["type"], registry=r)
        self.prompt_tokens = Counter("mlx_manager_prompt_tokens", "Prompt tokens processed.", ["model"], registry=r)
        self.cached_tokens = Counter(
            "mlx_manager_prompt_tokens_cached", "Prompt tokens reused from the prefix cache.", ["model"], registry=r
        )
        self.completion_tokens = Counter("mlx_manager_completion_tokens", "Tokens generated.", ["model"], registry=r)
        self.generations = Counter(
            "mlx_manager_generations", "Finished generations by finish reason.", ["model", "reason"], registry=r
        )
        self.ttft = Histogram(
            "mlx_manager_time_to_first_token_seconds", "Time to first token.", ["model"], buckets=_LATENCY, registry=r
        )
        self.itl = Histogram(
            "mlx_manager_inter_token_latency_seconds", "Time between tokens of a sequence.", ["model"],
            buckets=_ITL, registry=r,
        )  # fmt: skip

        self.time_limits = Counter(
            "mlx_manager_time_limits",
            "Requests that ran past a time limit: a generation ended (kind generation) or a queued request refused"
            " (kind queue).",
            ["endpoint", "kind"],
            registry=r,
        )

    def time_limit(self, endpoint: str, kind: str) -> None:
        self.time_limits.labels(endpoint, kind).inc()

    def attach(self, engine: Engine) -> None:
        self.registry.register(_EngineCollector(engine))

    def attach_router(self, router: Router) -> None:
        self.registry.register(_RouterCollector(router))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # --- GenerationObserver -------------------------------------------------------------------

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft.labels(model).observe(seconds)

    def next_tokens(self, model: str, seconds_per_token: float, count: int) -> None:
        child = self.itl.labels(model)
        for _ in range(count):
            child.observe(seconds_per_token)

    def finished(self, model: str, usage: Usage, reason: str | None) -> None:
        self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        self.cached_tokens.labels(model).inc(usage.cached_tokens)
        self.completion_tokens.labels(model).inc(usage.completion_tokens)
        self.generations.labels(model, reason or "unknown").inc()


class _EngineCollector(Collector):
    """Gauges read from the pool and schedulers when Prometheus scrapes, so they are never stale."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        entries = self.engine.pool.entries()
        loaded = GaugeMetricFamily("mlx_manager_models_loaded", "Models in the pool (loaded or loading).")
        loaded.add_metric([], len(entries))
        budget = GaugeMetricFamily("mlx_manager_memory_budget_bytes", "Memory the pool may use for models.")
        budget.add_metric([], self.engine.pool.config.memory_budget_bytes)
        memory = GaugeMetricFamily("mlx_manager_model_memory_bytes", "Memory a loaded model uses.", labels=["model"])
        load = GaugeMetricFamily("mlx_manager_model_load_seconds", "How long loading took.", labels=["model"])
        waiting = GaugeMetricFamily("mlx_manager_queue_depth", "Requests waiting for a batch slot.", labels=["model"])
        running = GaugeMetricFamily("mlx_manager_running_sequences", "Sequences being decoded.", labels=["model"])
        hit = GaugeMetricFamily(
            "mlx_manager_prefix_cache_hit_ratio",
            "Share of prompt tokens served from the prefix cache.",
            labels=["model"],
        )
        peak = GaugeMetricFamily(
            "mlx_manager_prefill_step_peak_tokens",
            "Most prompt tokens one step prefilled while sequences decoded (what step_prefill_tokens caps), over"
            " the model's last 4096 steps.",
            labels=["model"],
        )
        batch = GaugeMetricFamily(
            "mlx_manager_decode_batch_peak",
            "Most sequences decoded in one step, over the model's last 4096 steps.",
            labels=["model"],
        )
        tiers, vision, spec = _TierMetrics(), _vision_metrics(), _speculative_metrics()
        for e in entries:
            model = e.info.id
            memory.add_metric([model], e.memory_bytes)
            load.add_metric([model], e.load_seconds)
            if e.scheduler is not None:
                waiting.add_metric([model], e.scheduler.stats.waiting)
                running.add_metric([model], e.scheduler.stats.running)
                stats = e.scheduler.cache.stats
                hit.add_metric([model], stats.tokens_reused / stats.tokens_requested if stats.tokens_requested else 0.0)
                tiers.add(model, e.scheduler)
                peak.add_metric([model], prefill_peak(list(e.scheduler.step_log)))
                batch.add_metric([model], max((r.decoded for r in list(e.scheduler.step_log)), default=0))
                vision.add(model, e.scheduler)
                spec.add(model, e.scheduler)
        yield from (loaded, budget, memory, load, waiting, running, hit, peak, *tiers.families(), batch)
        yield from vision.families()
        yield from spec.families()
        yield from _memory_metrics(self.engine)
        yield _transcription_metrics(entries)


def _transcription_metrics(entries: list[PoolEntry]) -> Metric:
    """Transcriptions a loaded speech model finished, by outcome (done, cancelled: the client left, expired)."""
    from mlx_manager.engine.audio.model import SpeechModel  # mlx-free until a speech model exists

    family = CounterMetricFamily(
        "mlx_manager_transcriptions",
        "Transcriptions a loaded speech model ended: done, cancelled (the client left; stopped between windows)"
        " or expired (audio_timeout_seconds).",
        labels=["model", "outcome"],
    )
    for e in entries:
        if isinstance(e.loaded, SpeechModel):
            for outcome, count in sorted(e.loaded.outcomes.items()):
                family.add_metric([e.info.id, outcome], count)
    return family


def _memory_metrics(engine: Engine) -> Iterator[Metric]:
    """The memory monitor (engine/memory): what it last read, whether it refuses new requests, what it did."""
    guard = engine.memory
    last = guard.stats.last
    for name, text, value in (
        ("mlx_active_memory_bytes", "Bytes MLX's arrays hold (last monitor reading).", last.active),
        ("mlx_cache_memory_bytes", "Bytes in MLX's buffer cache (last monitor reading).", last.cache),
        ("system_available_memory_bytes", "Memory the system can give without swapping.", last.available),
        ("memory_shedding", "1 while new requests are refused for lack of memory.", int(guard.shedding)),
    ):
        gauge = GaugeMetricFamily(f"mlx_manager_{name}", text)
        gauge.add_metric([], value)
        yield gauge
    for name, text, value in (
        ("memory_trims", "Rounds in which memory pressure trimmed the prefix caches.", guard.stats.trims),
        ("memory_trimmed_bytes", "Prefix-cache bytes trimmed under memory pressure.", guard.stats.bytes_trimmed),
        ("memory_shed_requests", "Requests refused (503) under memory pressure.", guard.stats.shed),
    ):
        counter = CounterMetricFamily(f"mlx_manager_{name}", text)
        counter.add_metric([], value)
        yield counter


class _TierMetrics:
    """Prefix-cache tiers per model: hits, reused tokens and bytes per tier; disk reads and writes with their
    time; prompt tokens prefilled (not reused). Counted since the model loaded."""

    def __init__(self) -> None:
        labels = ["model", "tier"]
        self.hits = CounterMetricFamily("mlx_manager_prefix_cache_hits", "Prefix-cache hits by tier.", labels=labels)
        self.tokens = CounterMetricFamily(
            "mlx_manager_prefix_cache_tokens_reused", "Prompt tokens reused, by tier.", labels=labels
        )
        self.bytes = GaugeMetricFamily("mlx_manager_prefix_cache_bytes", "Prefix-cache bytes by tier.", labels=labels)
        self.computed = CounterMetricFamily(
            "mlx_manager_prompt_tokens_computed", "Prompt tokens prefilled, not taken from a cache.", labels=["model"]
        )
        self.disk: dict[str, CounterMetricFamily] = {
            name: CounterMetricFamily(f"mlx_manager_prefix_cache_disk_{name}", text, labels=["model"])
            for name, text in (
                ("reads", "Prefix-cache files read on a hit."),
                ("read_seconds", "Time spent reading prefix-cache files."),
                ("writes", "Prefix-cache files written."),
                ("write_seconds", "Time spent writing prefix-cache files."),
                ("unreadable", "Torn or altered prefix-cache files found and deleted, never loaded."),
            )
        }

    def add(self, model: str, scheduler: Scheduler) -> None:
        stats = scheduler.cache.stats
        for tier, count in stats.hits_by_tier.items():
            self.hits.add_metric([model, tier], count)
            self.tokens.add_metric([model, tier], stats.tokens_by_tier.get(tier, 0))
        self.bytes.add_metric([model, "ram"], scheduler.cache.bytes)
        self.computed.add_metric([model], scheduler.stats.prompt_tokens_computed)
        disk = scheduler.tiers.disk
        if disk is not None:
            self.bytes.add_metric([model, "disk"], disk.nbytes)
            for name, family in self.disk.items():
                family.add_metric([model], getattr(disk.stats, name))

    def families(self) -> list[Metric]:
        return [self.hits, self.tokens, self.bytes, self.computed, *self.disk.values()]


class _PartMetrics:
    """Per-model metrics read from `scheduler.<part>.stats`, for the parts only some models have: a vision model's
    image-feature cache (engine/vision/features), speculative decoding (engine/speculative)."""

    def __init__(self, part: str, fields: tuple[tuple[type[Family], str, str, str], ...]) -> None:
        self.part = part
        self.fields = [
            (attribute, kind(f"mlx_manager_{name}", text, labels=["model"])) for kind, name, attribute, text in fields
        ]

    def add(self, model: str, scheduler: Scheduler) -> None:
        part = getattr(scheduler, self.part, None)
        if part is not None:
            for attribute, family in self.fields:
                family.add_metric([model], getattr(part.stats, attribute))

    def families(self) -> list[Metric]:
        return [family for _, family in self.fields]


def _vision_metrics() -> _PartMetrics:
    return _PartMetrics(
        "features",
        (
            (CounterMetricFamily, "vision_feature_cache_hits", "hits", "Images whose encoded features were reused."),
            (CounterMetricFamily, "vision_feature_cache_misses", "misses", "Images encoded by the vision tower."),
            (GaugeMetricFamily, "vision_feature_cache_bytes", "bytes", "Bytes of encoded image features kept."),
        ),
    )


def _speculative_metrics() -> _PartMetrics:
    return _PartMetrics(
        "spec",
        (
            (CounterMetricFamily, "speculative_draft_tokens", "drafted", "Draft tokens checked by the target model."),
            (CounterMetricFamily, "speculative_accepted_tokens", "accepted", "Draft tokens the target model accepted."),
            (
                GaugeMetricFamily,
                "speculative_acceptance_rate",
                "acceptance_rate",
                "Accepted over drafted tokens, since load.",
            ),
        ),
    )


_BREAKER = {"closed": 0, "half_open": 1, "open": 2}


class _RouterCollector(Collector):
    """Each remote backend's circuit breaker and load, as the router sees them now."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        breaker = GaugeMetricFamily(
            "mlx_manager_backend_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", labels=["backend"]
        )
        outstanding = GaugeMetricFamily(
            "mlx_manager_backend_outstanding", "Requests in flight on a backend.", labels=["backend"]
        )
        served = GaugeMetricFamily("mlx_manager_backend_served", "Requests a backend has taken.", labels=["backend"])
        for state in list(self.router.balancer.backends.values()):
            breaker.add_metric([state.name], _BREAKER[state.breaker.state])
            outstanding.add_metric([state.name], state.outstanding)
            served.add_metric([state.name], state.served)
        yield from (breaker, outstanding, served)
