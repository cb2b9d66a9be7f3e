"""A routing rule falls back past a distributed model that cannot serve: one whose host is not reachable from
here is a 503-class error naming the rank and host, and the router tries the rule's next backend (a real server)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from mlx_manager.api.replies import assemble
from mlx_manager.engine.distributed.backend import DistributedModels
from mlx_manager.engine.distributed.supervisor import DistributedSpec, Host
from mlx_manager.engine.errors import ModelUnavailableError
from mlx_manager.engine.types import ChatPrompt, SamplingParams
from mlx_manager.routing.router import BackendConfig, Router, RoutingTable
from mlx_manager.routing.rules import Rule
from mlx_manager.testing.server import ServerProcess

HI = ChatPrompt(messages=[{"role": "user", "content": "Say hi."}])
HOSTS = (Host("localhost", ("127.0.0.1",)), Host("gpu-node-2", ("10.0.0.9",)))


class NoLocal:
    async def generate(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the distributed model answers for its own id")


def _models(tiny_models: dict[str, Path]) -> DistributedModels:
    spec = DistributedSpec("tiny-llama", str(tiny_models["tiny-llama"]), HOSTS, "tensor")
    return DistributedModels(NoLocal(), [spec])  # type: ignore[arg-type]


def test_a_distributed_model_that_cannot_start_says_which_rank_and_host(tiny_models: dict[str, Path]) -> None:
    async def main() -> None:
        with pytest.raises(ModelUnavailableError) as err:
            await _models(tiny_models).generate("tiny-llama", HI, SamplingParams(max_tokens=3))
        assert "rank 1" in err.value.message and "gpu-node-2" in err.value.message

    asyncio.run(main())


def test_a_rule_falls_back_past_an_unavailable_distributed_model(
    server: ServerProcess, tiny_models: dict[str, Path]
) -> None:
    rule = Rule.create("tiny-llama", ["local", "live"])
    table = RoutingTable(
        rules=(rule,),
        backends={"local": BackendConfig("local", "local"), "live": BackendConfig("live", "openai", server.base_url)},
    )

    async def main() -> str | None:
        router = Router(_models(tiny_models), lambda: table)
        router.balancer.order = lambda names: list(names)  # type: ignore[method-assign]  # local first
        gen = await router.generate("tiny-llama", HI, SamplingParams(max_tokens=3))
        reason = assemble([c async for c in gen]).finish_reason
        await router.close()
        return reason

    assert asyncio.run(main()) == "length"
