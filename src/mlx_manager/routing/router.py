"""Where a request runs: the local engine or a remote backend, by rule, with fallback, breakers and balancing.

The router is a Backend (engine/backend.py) over backends: the local engine and remote servers (RemoteBackend).
The APIs are handed it at construction and call it exactly as they would the engine; what comes back iterates the
same engine chunks whether it ran here or on a peer, so every protocol is translated both ways through one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import httpx

from mlx_manager.config import default
from mlx_manager.engine.backend import LOCAL, ONE, Backend, Capabilities, Run
from mlx_manager.engine.errors import ContextLengthError, EngineError, ModelUnavailableError, QueueFullError
from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import Prompt, SamplingParams
from mlx_manager.routing.balancer import Balancer
from mlx_manager.routing.base_url import normalize_base_url
from mlx_manager.routing.breaker import CircuitBreaker
from mlx_manager.routing.remote import RemoteError
from mlx_manager.routing.remote_backend import PROTOCOL_NAMES, RemoteBackend
from mlx_manager.routing.retry import backoff_seconds, counts_against_backend, safe_to_retry, should_fall_back
from mlx_manager.routing.rules import Rule, first_match

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendConfig:
    name: str
    kind: Literal["local", "openai", "anthropic"]
    base_url: str | None = None
    api_key: str | None = None
    timeout_seconds: float = 60.0


@dataclass(frozen=True)
class RoutingTable:
    rules: tuple[Rule, ...] = ()
    backends: dict[str, BackendConfig] = field(default_factory=dict)


class NoBackendError(EngineError):
    """Every backend of the rule failed or was skipped; `status` is the last upstream status."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class Router:
    def __init__(
        self,
        engine: Backend,
        table: Callable[[], RoutingTable],
        failure_threshold: int = default("breaker_failures"),
        cooldown: float = default("breaker_cooldown_seconds"),
        retries: int = default("backend_retries"),
        check_prompt: Callable[[Prompt], None] | None = None,
    ) -> None:
        """`check_prompt`: the server's cheap prompt limits (bytes, messages), applied to routed requests too."""
        self.engine = engine
        self.table = table
        self.check_prompt = check_prompt or (lambda _prompt: None)
        self.balancer = Balancer(lambda: CircuitBreaker(failure_threshold, cooldown))
        self.retries = retries  # per backend, for failures that are safe to resend
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._health_task: asyncio.Task[None] | None = None

    def route(self, model: str) -> Rule | None:
        return first_match(self.table().rules, model)

    def routed(self, model: str) -> bool:
        """Whether a rule decides where `model` runs; else it runs on this server's engine."""
        return self.route(model) is not None

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, run: Run = ONE) -> Generation:
        rule = self.route(model_id)
        if rule is None:
            return await self.engine.generate(model_id, prompt, params, run)
        self.check_prompt(prompt)
        last_status: int | None = None
        problems: list[str] = []
        for name, config in self._configs(rule, problems):
            state = self.balancer.state(name)
            if not state.breaker.allow():
                problems.append(f"{name}: circuit open")
                continue
            model = rule.upstream_model(model_id)
            self.balancer.begin(name)  # outstanding until the generation ends: what the balancing counts
            try:
                gen = await self._start_with_retries(config, model, prompt, params, run)
            except (QueueFullError, ContextLengthError, ModelUnavailableError) as exc:  # local overflow or down
                self.balancer.end(name)
                problems.append(f"{name}: {exc}")
                continue
            except RemoteError as exc:
                self.balancer.end(name)
                last_status = self._failed(name, exc, problems)
                log.warning("Backend %s failed for %s (%s); trying the next", name, model_id, exc.status or "no answer")
                continue
            state.breaker.record_success()
            state.served += 1
            gen.add_done_callback(partial(self.balancer.end, name))
            return gen
        raise NoBackendError(f"No backend could serve '{model_id}': " + "; ".join(problems), last_status)

    async def count_tokens(self, model_id: str, prompt: Prompt) -> int:
        """Prompt tokens where the request would run: here, or an Anthropic backend's own count_tokens. An
        OpenAI-compatible backend has no such endpoint (a guess would mislead a client budgeting its context)."""
        rule = self.route(model_id)
        if rule is None:
            return await self.engine.count_tokens(model_id, prompt)
        self.check_prompt(prompt)
        problems: list[str] = []
        last_status: int | None = 400  # when no backend of the rule can count at all
        for name, config in self._configs(rule, problems):
            model, backend = rule.upstream_model(model_id), self._backend(config)
            if not (await backend.capabilities(model)).count_tokens:
                problems.append(f"{name}: {PROTOCOL_NAMES.get(config.kind, config.kind)}, no token count")
                continue
            breaker = self.balancer.state(name).breaker
            if not breaker.allow():
                problems.append(f"{name}: circuit open")
                continue
            try:
                tokens = await backend.count_tokens(model, prompt)
            except RemoteError as exc:
                last_status = self._failed(name, exc, problems)
                continue
            breaker.record_success()
            return tokens
        raise NoBackendError(f"No backend could count the tokens of '{model_id}': " + "; ".join(problems), last_status)

    async def capabilities(self, model_id: str) -> Capabilities:
        """A model a rule sends elsewhere: chat only, images as sent, counted where some backend of the rule can."""
        rule = self.route(model_id)
        if rule is None:
            return await self.engine.capabilities(model_id)
        table = self.table()
        configs = [_config(table, name) for name in rule.backends]
        counts = any(c is not None and c.kind != "openai" for c in configs)
        return Capabilities(where=", ".join(rule.backends), task=None, images=None, count_tokens=counts)

    def _configs(self, rule: Rule, problems: list[str]) -> Iterator[tuple[str, BackendConfig]]:
        """The rule's backends in the balancer's order; one that is not configured is noted and passed over."""
        table = self.table()
        for name in self.balancer.order(list(rule.backends)):
            config = _config(table, name)
            if config is None:
                problems.append(f"{name}: no such backend")
            else:
                yield name, config

    def _backend(self, config: BackendConfig) -> Backend:
        if config.kind == "local":
            return self.engine
        return RemoteBackend(config.name, config.kind, partial(self._client, config), config.api_key)

    def _failed(self, name: str, exc: RemoteError, problems: list[str]) -> int | None:
        """A failed backend: a NoBackendError when the failure is the request's own, else noted to try the next."""
        if not should_fall_back(exc.status):
            raise NoBackendError(str(exc), exc.status) from exc
        self._record(name, exc.status)
        problems.append(f"{name}: {exc.message[:300]}")
        return exc.status

    async def _start_with_retries(
        self, backend: BackendConfig, model: str, prompt: Prompt, params: SamplingParams, run: Run
    ) -> Generation:
        for attempt in range(self.retries + 1):
            try:
                return await self._start(backend, model, prompt, params, run)
            except RemoteError as exc:
                if attempt == self.retries or not safe_to_retry(exc.status):
                    raise
                await asyncio.sleep(backoff_seconds(attempt))
        raise AssertionError("unreachable")

    async def _start(
        self, backend: BackendConfig, model: str, prompt: Prompt, params: SamplingParams, run: Run
    ) -> Generation:
        return await self._backend(backend).generate(model, prompt, params, run)

    def _record(self, name: str, status: int | None) -> None:
        breaker = self.balancer.state(name).breaker
        if counts_against_backend(status):
            breaker.record_failure()
        else:  # it answered: healthy, and a half-open breaker's probe is over
            breaker.record_success()

    def start_health_checks(self, interval: float) -> None:
        """Probe remote backends every `interval` seconds; an unhealthy one goes to the end of the order."""
        if interval > 0 and self._health_task is None:
            self._health_task = asyncio.create_task(self._health_loop(interval))

    async def _health_loop(self, interval: float) -> None:
        while True:
            await self.check_health()
            await asyncio.sleep(interval)

    async def check_health(self) -> None:
        remote = [b for b in self.table().backends.values() if b.kind != LOCAL and b.base_url]
        results = await asyncio.gather(*(self._probe(b) for b in remote))
        for backend, healthy in zip(remote, results, strict=True):
            state = self.balancer.state(backend.name)
            if state.healthy != healthy:
                log.warning("Backend %s is %s", backend.name, "healthy again" if healthy else "unhealthy")
            state.healthy = healthy

    async def _probe(self, backend: BackendConfig) -> bool:
        # The model list answers on every OpenAI- and Anthropic-compatible server we route to, with the same key.
        key = backend.api_key
        headers = {"Authorization": f"Bearer {key}", "x-api-key": key} if key else {}
        path = "/models"  # under the OpenAI base URL's version (routing/base_url.py)
        if backend.kind == "anthropic":
            headers["anthropic-version"] = "2023-06-01"
            path = "/v1/models"
        try:
            response = await self._client(backend).get(path, headers=headers, timeout=5)
        except (httpx.HTTPError, RemoteError):
            return False
        return response.status_code == 200

    def _client(self, backend: BackendConfig) -> httpx.AsyncClient:
        try:
            base_url = normalize_base_url(backend.kind, backend.base_url or "")
            client = self._clients.get(backend.name)
            if client is None or str(client.base_url).rstrip("/") != base_url:
                client = httpx.AsyncClient(base_url=base_url, timeout=backend.timeout_seconds)
                self._clients[backend.name] = client
        except (ValueError, httpx.InvalidURL) as exc:
            # A row saved before base URLs were checked: a failed backend (fall back), never a 500.
            raise RemoteError(backend.name, None, f"unusable base URL {backend.base_url!r}: {exc}") from exc
        return client

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        for client in self._clients.values():
            await client.aclose()


def _config(table: RoutingTable, name: str) -> BackendConfig | None:
    """A backend by name; "local" is this server's engine even when no row names it."""
    return table.backends.get(name) or (BackendConfig(LOCAL, "local") if name == LOCAL else None)
