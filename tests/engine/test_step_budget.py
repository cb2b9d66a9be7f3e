"""The per-step prefill budget: arriving prompts are prefilled in chunks while the running batch keeps decoding.

Steps are counted in the scheduler's step log, never timed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from mlx_manager.engine.engine import Engine
from mlx_manager.engine.prefill_sharing import Prefill
from mlx_manager.engine.scheduler import Scheduler
from mlx_manager.engine.step_budget import StepBudget, StepRecord
from mlx_manager.engine.types import SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect, run_engine

GREEDY = SamplingParams(temperature=0, max_tokens=8)
ARRIVALS = 6
PROMPT_TOKENS = 200


def arriving(i: int) -> TextPrompt:
    """A distinct 200-token prompt: nothing of it is in the prefix cache."""
    return TextPrompt(token_ids=tuple(300 + (7 * i + k) % 600 for k in range(PROMPT_TOKENS)))


def scheduler(engine: Engine) -> Scheduler:
    sched = engine.pool.entries()[0].scheduler
    assert sched is not None
    return sched


async def arrivals_during_decode(engine: Engine) -> list[StepRecord]:
    """Six prompts arrive at once while one sequence decodes; the steps from their arrival to their last token."""
    count = replace(GREEDY, max_tokens=1500, ignore_eos=True)
    running = await engine.generate("tiny-llama", TextPrompt(text="Count."), count)
    stream = running.__aiter__()
    await stream.__anext__()  # decoding now
    sched = scheduler(engine)
    first = len(sched.step_log)  # far below its maxlen here
    gens = [await engine.generate("tiny-llama", arriving(i), GREEDY) for i in range(ARRIVALS)]
    await asyncio.gather(*(collect(g) for g in gens))
    steps = list(sched.step_log)[first:]
    assert not running.done  # it kept decoding the whole time
    running.cancel()
    async for _ in stream:
        pass
    return steps


def test_running_sequences_get_a_token_on_every_step_while_arrivals_prefill(tiny_models_dir: Path) -> None:
    steps = run_engine(
        tiny_models_dir,
        arrivals_during_decode,
        step_prefill_tokens=32,
        prefill_step_size=512,
        prefix_cache_bytes=0,
    )
    prefilling = [s for s in steps if s.prefilled]
    assert sum(s.prefilled for s in prefilling) == ARRIVALS * (PROMPT_TOKENS - 1)
    assert all(s.prefilled <= 32 for s in prefilling)  # at most the budget, the padding included below
    assert all(s.decoded >= 1 for s in prefilling)  # the running sequence got its token on each of them
    assert len(prefilling) >= ARRIVALS * (PROMPT_TOKENS - 1) // 32


def test_without_a_budget_whole_prompts_are_prefilled_in_one_step(tiny_models_dir: Path) -> None:
    steps = run_engine(tiny_models_dir, arrivals_during_decode, step_prefill_tokens=0, prefix_cache_bytes=0)
    # The running sequence waits for each of these steps (for several prompts at once when they arrive together).
    assert max(s.prefilled for s in steps) >= PROMPT_TOKENS - 1


def test_greedy_outputs_are_the_same_with_and_without_the_budget(tiny_models_dir: Path) -> None:
    prompts = [arriving(i) for i in range(3)] + [TextPrompt(text=f"Tell me about {i}.") for i in range(5)]

    async def body(engine: Engine) -> list[list[int]]:
        gens = [await engine.generate("tiny-llama", p, replace(GREEDY, max_tokens=16)) for p in prompts]
        return [ids for ids, _, _ in await asyncio.gather(*(collect(g) for g in gens))]

    budgeted = run_engine(tiny_models_dir, body, step_prefill_tokens=16, prefix_cache_bytes=0)
    unbudgeted = run_engine(tiny_models_dir, body, step_prefill_tokens=0, prefix_cache_bytes=0)
    assert budgeted == unbudgeted


def test_a_prompt_cancelled_mid_prefill_frees_the_budget_and_keeps_its_kv(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        long = TextPrompt(token_ids=tuple(range(300, 1000)) * 2)  # 1400 tokens, 8 a step
        victim = await engine.generate("tiny-llama", long, GREEDY)
        sched = scheduler(engine)
        while sched.stats.steps < 2:  # its first chunks are computed
            await asyncio.sleep(0.001)
        after = await engine.generate("tiny-llama", arriving(1), GREEDY)  # waits: the long prompt has the budget
        victim.cancel()
        assert await collect(victim) == ([], "", "cancelled")  # still prefilling when cancelled
        ids, _, finish = await collect(after)
        assert finish == "length" and len(ids) == GREEDY.max_tokens
        again = await engine.generate("tiny-llama", long, GREEDY)
        await collect(again)
        assert again.usage.cached_tokens >= 16  # what the cancelled prefill computed was kept

    run_engine(tiny_models_dir, body, step_prefill_tokens=8, prefix_block_size=16)


# --- the policy alone ------------------------------------------------------------------------------------------


def prefill(start: int, end: int, chunk: int, budget: StepBudget) -> Prefill:
    p = Prefill(cast(Any, None), [], start, end)
    budget.cut(p, chunk)
    return p


def test_a_prompt_alone_gets_the_whole_budget() -> None:
    budget = StepBudget(64, step_size=512)
    assert budget.chunk(1000, []) == 64
    assert budget.chunk(20, []) == 20


def test_short_prompts_share_a_step_padded_to_the_widest() -> None:
    budget = StepBudget(64, step_size=512)
    first = prefill(0, 20, budget.chunk(20, []), budget)
    second = prefill(0, 20, budget.chunk(20, [first]), budget)
    assert budget.chunk(20, [first, second]) == 20  # 3 x 20 fits in 64
    assert budget.chunk(20, [first, second, second]) == 0  # 4 x 20 does not: the 4th waits
    assert budget.chunk(21, [first]) == 21
    assert budget.chunk(40, [first]) == 0  # 2 x 40 > 64: it waits a step for the other one to finish


def test_a_long_prompt_waits_for_the_one_prefilling_rather_than_keep_a_thin_chunk() -> None:
    budget = StepBudget(64, step_size=512)
    long = prefill(0, 1000, budget.chunk(1000, []), budget)
    assert budget.left(long) == [64] * 15 + [40]
    assert budget.chunk(1000, [long]) == 0
    long.computed = 960  # its last chunk: 40 tokens
    assert budget.chunk(1000, [long]) == 0  # 2 x 40 > 64, and a 32-token chunk would stay after it is gone
    long.computed = 1000  # prefilled: only the prompt's last token is left, which goes with the decode
    assert budget.chunk(1000, [long]) == 64


def test_two_long_prompts_share_the_budget_when_one_has_only_half_of_it() -> None:
    budget = StepBudget(64, step_size=512)
    half = prefill(0, 1000, 32, budget)
    assert budget.chunk(1000, [half]) == 32
    assert budget.chunk(1000, [half, half]) == 0  # a third would be too thin


def test_a_full_cache_hit_costs_no_budget_and_no_budget_means_no_cuts() -> None:
    budget = StepBudget(64, step_size=512)
    long = prefill(0, 1000, 64, budget)
    assert budget.chunk(0, [long]) == 512
    off = StepBudget(0, step_size=512)
    assert off.chunk(1000, [long, long]) == 512
    assert prefill(0, 1000, 512, off).cuts == ()
