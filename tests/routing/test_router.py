"""The router against real servers on loopback: rule matching, fallback past a dead backend, breakers, spread."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from mlx_manager.api.replies import assemble
from mlx_manager.engine.backend import ONE
from mlx_manager.engine.types import ChatPrompt, SamplingParams
from mlx_manager.routing.remote import RemoteError
from mlx_manager.routing.router import BackendConfig, NoBackendError, Router, RoutingTable
from mlx_manager.routing.rules import Rule
from mlx_manager.testing.server import ServerProcess, free_port

HI = [{"role": "user", "content": "Say hi."}]


class NoLocal:
    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no rule should fall through to the local engine here")


def _table(server: ServerProcess, rule: Rule) -> RoutingTable:
    live = BackendConfig("live", "openai", server.base_url)
    return RoutingTable(
        rules=(rule,),
        backends={
            "dead": BackendConfig("dead", "openai", f"http://127.0.0.1:{free_port()}", timeout_seconds=5),
            "live": live,
            "live2": BackendConfig("live2", "anthropic", server.base_url),
            "missing": BackendConfig("missing", "openai", server.base_url),
        },
    )


def _ask(router: Router, model: str, times: int = 1) -> list[str]:
    async def main() -> list[str]:
        texts = []
        for _ in range(times):
            gen = await router.generate(model, ChatPrompt(messages=HI), SamplingParams(max_tokens=3))
            texts.append(assemble([c async for c in gen]).finish_reason or "")
        await router.close()
        return texts

    return asyncio.run(main())


def test_a_dead_backend_is_skipped_and_its_breaker_opens(server: ServerProcess) -> None:
    rule = Rule.create("peer-*", ["dead", "live"], "glob", remote_model="tiny-llama")
    router = Router(NoLocal(), lambda: _table(server, rule), failure_threshold=2, cooldown=60)
    router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]  # rule order, to hit dead first
    assert _ask(router, "peer-small", times=3) == ["length"] * 3
    dead, live = router.balancer.state("dead"), router.balancer.state("live")
    assert dead.breaker.state == "open" and dead.breaker.failures == 2  # the third request never tried it
    assert live.served == 3 and live.outstanding == 0


def test_rules_route_by_name_and_rename_upstream_over_either_protocol(server: ServerProcess) -> None:
    rule = Rule.create(r"anthro-.*", ["live2"], "regex", remote_model="tiny-gemma3")
    router = Router(NoLocal(), lambda: _table(server, rule))
    assert _ask(router, "anthro-x") == ["length"]
    assert router.balancer.state("live2").served == 1


def test_when_every_backend_fails_the_error_names_each_and_the_url_tried(server: ServerProcess) -> None:
    rule = Rule.create("x", ["dead", "missing"], remote_model="no-such-model")
    router = Router(NoLocal(), lambda: _table(server, rule))
    router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]
    with pytest.raises(NoBackendError) as err:
        _ask(router, "x")
    assert err.value.status == 404
    assert "dead: no answer from POST http://127.0.0.1:" in str(err.value)
    assert f"missing: 404 from POST {server.base_url}/v1/chat/completions" in str(err.value)


def test_a_backend_answering_404_is_passed_over_without_tripping_its_breaker(server: ServerProcess) -> None:
    # The model is there but this backend's base URL points elsewhere on the server: every request is a 404.
    table = _table(server, Rule.create("y", ["wrong-path", "live"], remote_model="tiny-llama"))
    wrong = BackendConfig("wrong-path", "openai", f"{server.base_url}/v2")
    router = Router(NoLocal(), lambda: replace(table, backends={**table.backends, "wrong-path": wrong}), 1)
    router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]
    assert _ask(router, "y", times=2) == ["length"] * 2
    assert router.balancer.state("live").served == 2
    assert router.balancer.state("wrong-path").breaker.state == "closed"  # a threshold of 1 would have opened it


def test_a_client_error_upstream_is_final_not_a_reason_to_try_elsewhere(server: ServerProcess) -> None:
    rule = Rule.create("z", ["live", "live2"], remote_model="tiny-llama")
    router = Router(NoLocal(), lambda: _table(server, rule))
    router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]

    async def main() -> None:
        prompt = ChatPrompt(messages=HI, tools=[{"type": "function", "function": {"name": "f"}}], force_tool="g")
        try:
            await router.generate("z", prompt, SamplingParams(max_tokens=3))
        finally:
            await router.close()

    with pytest.raises(NoBackendError) as err:
        asyncio.run(main())
    assert err.value.status == 400 and str(err.value).startswith("live: 400 from POST")
    assert router.balancer.state("live2").outstanding == 0 and router.balancer.state("live2").last_pick == -1


def test_names_without_a_rule_run_locally(server: ServerProcess) -> None:
    calls: list[str] = []

    class Local:
        async def generate(self, model_id: str, *args: Any, **kwargs: Any) -> Any:
            calls.append(model_id)
            raise RuntimeError("stop here")

    router = Router(Local(), lambda: RoutingTable())
    with pytest.raises(RuntimeError):
        _ask(router, "tiny-llama")
    assert calls == ["tiny-llama"]


def test_failures_safe_to_resend_are_retried_on_the_same_backend_others_are_not() -> None:
    class Flaky(Router):
        def __init__(self, statuses: list[int | None]) -> None:
            super().__init__(NoLocal(), RoutingTable, retries=2)
            self.statuses, self.calls = statuses, 0

        async def _start(self, *args: Any) -> Any:
            self.calls += 1
            if self.statuses:
                raise RemoteError("b", self.statuses.pop(0), "nope")
            return "ok"

    backend = BackendConfig("b", "openai", "http://x")
    for statuses, calls, ok in (([None, 503], 3, True), ([500], 1, False), ([None, None, None], 3, False)):
        router = Flaky(list(statuses))
        call = router._start_with_retries(backend, "m", ChatPrompt(messages=HI), SamplingParams(), ONE)
        if ok:
            assert asyncio.run(call) == "ok"
        else:
            with pytest.raises(RemoteError):
                asyncio.run(call)
        assert router.calls == calls


def test_health_checks_send_an_unreachable_backend_to_the_end(server: ServerProcess) -> None:
    rule = Rule.create("h", ["dead", "live"], remote_model="tiny-llama")
    router = Router(NoLocal(), lambda: _table(server, rule))

    async def main() -> list[str]:
        await router.check_health()
        order = router.balancer.order(["dead", "live"])
        await router.close()
        return order

    assert asyncio.run(main()) == ["live", "dead"]
    assert not router.balancer.state("dead").healthy and router.balancer.state("live").healthy


def test_every_backend_breaker_takes_the_routers_settings() -> None:
    router = Router(NoLocal(), RoutingTable, failure_threshold=5, cooldown=2.0)
    breaker = router.balancer.state("any").breaker
    assert (breaker.failure_threshold, breaker.cooldown_seconds) == (5, 2.0)


def test_a_backend_with_an_unusable_stored_url_is_a_failed_backend_not_a_crash(server: ServerProcess) -> None:
    rule = Rule.create("peer-*", ["broken", "live"], "glob", remote_model="tiny-llama")
    table = replace(
        _table(server, rule),
        backends={**_table(server, rule).backends, "broken": BackendConfig("broken", "openai", "http://[::1")},
    )
    router = Router(NoLocal(), lambda: table, failure_threshold=5, cooldown=60)
    router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]
    assert _ask(router, "peer-small") == ["length"]
    assert router.balancer.state("live").served == 1
