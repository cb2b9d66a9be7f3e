"""The memory ceiling through a real server: a shaped model under a budget far below what concurrent long prompts
need. The monitor trims the prefix cache first, then refuses new requests with a 503 and Retry-After; the server
never crashes, and takes requests again once the burst is over."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import psutil
import pytest
from pydantic import ValidationError

from mlx_manager.api.manager.schemas import SettingsUpdate
from mlx_manager.config import Settings
from mlx_manager.engine.memory import MemoryGuard, MemoryReading
from mlx_manager.testing.server import ServerProcess, run_server
from mlx_manager.testing.tiny_models import write_shaped_model

BUDGET = 40 << 20
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
WORDS += ["mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau"]


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    models = tmp_path_factory.mktemp("shaped")
    # About 13 MB of float32 weights and 8 KB of KV per token: a 1000-token prompt's KV is 8 MB.
    write_shaped_model(
        models, "llama", "shaped-mem", hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=4,
        intermediate_size=512,
    )  # fmt: skip
    env = {"MLX_MANAGER_MEMORY_BUDGET_BYTES": str(BUDGET), "MLX_MANAGER_DISK_CACHE_BYTES": "0"}
    with run_server(tmp_path_factory.mktemp("tight"), ["--model-dir", str(models)], env=env) as srv:
        yield srv


def _prompt(seed: int, words: int = 280) -> str:
    return " ".join(WORDS[(seed * 7 + i * (seed % 5 + 1)) % len(WORDS)] for i in range(words))


def _metric(server: ServerProcess, name: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    found = re.findall(rf"^mlx_manager_{name}(?:_total)? ([0-9.e+]+)$", text, re.M)
    return float(found[0]) if found else 0.0


def test_concurrent_long_prompts_past_the_budget_end_in_503s_and_trimmed_caches(tight: ServerProcess) -> None:
    url = tight.base_url

    async def one(http: httpx.AsyncClient, seed: int, words: int = 280) -> httpx.Response:
        body = {"model": "shaped-mem", "prompt": _prompt(seed, words), "max_tokens": 8, "temperature": 0}
        return await http.post("/v1/completions", json=body)

    warm_refused = 0

    async def main() -> list[httpx.Response]:
        nonlocal warm_refused
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            for seed in range(3):  # the prefix cache fills past the budget
                # One after another; a reply can leave memory over the mark until the monitor's next trim, so a
                # client waits as Retry-After asks (bounded) rather than failing the warm-up.
                for _ in range(20):
                    reply = await one(http, seed)
                    if reply.status_code != 503:
                        break
                    warm_refused += 1
                    await asyncio.sleep(0.5)
                assert reply.status_code == 200, reply.text
            tasks = []
            for seed in range(3, 15):  # a burst of longer prompts, arriving over a few seconds
                # Longer than the warm-up's: attention's scores live outside MLX's memory on the CPU (cpu_kernels),
                # so the KV of the prompts in flight has to carry the burst past the budget by itself.
                tasks.append(asyncio.create_task(one(http, seed, 600)))
                await asyncio.sleep(0.15)
            return list(await asyncio.gather(*tasks))

    replies = asyncio.run(main())
    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 503}, codes
    refused = [r for r in replies if r.status_code == 503]
    assert refused and 200 in codes, codes
    assert all(r.json()["error"]["code"] == "memory_pressure" and int(r.headers["retry-after"]) >= 1 for r in refused)
    assert _metric(tight, "memory_trimmed_bytes") > 0
    assert _metric(tight, "memory_shed_requests") == len(refused) + warm_refused
    assert "refusing new requests" in tight.log() and "trimmed" in tight.log()

    # Once the burst is over the monitor sees memory back under the low mark and takes requests again.
    async def after() -> int:
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            for _ in range(100):
                reply = await one(http, 99)
                if reply.status_code == 200:
                    return 200
                await asyncio.sleep(0.2)
            return reply.status_code

    assert asyncio.run(after()) == 200
    assert tight.proc.poll() is None and httpx.get(f"{url}/health").status_code == 200


def test_the_budget_is_bytes_an_amount_or_a_percentage_of_ram() -> None:
    total = psutil.virtual_memory().total
    assert Settings(memory_budget_bytes="512MiB").memory_budget_bytes == 512 << 20
    assert Settings(memory_budget_bytes="48GB").memory_budget_bytes == 48 * 10**9
    assert Settings(memory_budget_bytes="50%").memory_budget_bytes == total // 2
    assert SettingsUpdate.model_validate({"memory_budget_bytes": "25%"}).memory_budget_bytes == total // 4
    for bad in ("lots", "0%", "120%", "12XB"):
        with pytest.raises(ValidationError, match="memory"):
            Settings(memory_budget_bytes=bad)


def test_shedding_starts_past_the_high_mark_and_ends_under_the_low_one_or_when_idle() -> None:
    readings = iter([95, 85, 70, 95, 95])
    guard = MemoryGuard(lambda: 100, lambda: 0, read=lambda: MemoryReading(next(readings), 0, 1 << 40))

    async def rounds() -> list[bool]:
        seen = []
        for busy in (True, True, True, True, False):
            guard.check([], busy)
            seen.append(guard.shedding)
        return seen

    # 95 (nothing to trim): shed; 85 stays shed (above the low mark); 70 ends it; 95 sheds again, but not while
    # nothing runs (refusing requests would free nothing).
    assert asyncio.run(rounds()) == [True, True, False, True, False]
