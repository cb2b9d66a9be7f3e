"""The per-step prefill budget: arriving prompts are prefilled in chunks while the running batch keeps decoding.

Steps are counted in the scheduler's step log, never timed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

from mlx_manager.engine.engine import Engine
from mlx_manager.engine.generation import Generation
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


@contextlib.asynccontextmanager
async def decoding(engine: Engine, count: int) -> AsyncIterator[list[Generation]]:
    """`count` long sequences decoding (so the budget holds), cancelled on the way out."""
    params = replace(GREEDY, max_tokens=1500, ignore_eos=True)
    gens = [await engine.generate("tiny-llama", TextPrompt(text=f"Count to {i}."), params) for i in range(count)]
    streams = [g.__aiter__() for g in gens]  # a dropped iterator cancels its generation
    for stream in streams:
        await stream.__anext__()
    yield gens
    for gen, stream in zip(gens, streams, strict=True):
        gen.cancel()
        async for _ in stream:
            pass


async def arrivals_during_decode(engine: Engine) -> list[StepRecord]:
    """Six prompts arrive at once while six sequences decode; the steps from their arrival to their last token."""
    async with decoding(engine, ARRIVALS) as running:
        sched = scheduler(engine)
        first = len(sched.step_log)  # far below its maxlen here
        gens = [await engine.generate("tiny-llama", arriving(i), GREEDY) for i in range(ARRIVALS)]
        await asyncio.gather(*(collect(g) for g in gens))
        assert not any(g.done for g in running)  # they kept decoding the whole time
        return list(sched.step_log)[first:]


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
    assert all(s.prefilled <= 32 for s in prefilling)  # at most the budget
    assert all(s.decoded >= ARRIVALS for s in prefilling)  # each running sequence got its token on each of them
    assert len(prefilling) >= ARRIVALS * (PROMPT_TOKENS - 1) // 32


def test_without_a_budget_whole_prompts_are_prefilled_in_one_step(tiny_models_dir: Path) -> None:
    steps = run_engine(tiny_models_dir, arrivals_during_decode, step_prefill_tokens=0, prefix_cache_bytes=0)
    # The running sequences wait for each of these steps (for several prompts at once when they arrive together).
    assert max(s.prefilled for s in steps) >= PROMPT_TOKENS - 1


def test_a_burst_at_an_idle_model_never_prefills_behind_half_of_it_decoding(tiny_models_dir: Path) -> None:
    short = [TextPrompt(token_ids=tuple(300 + (5 * i + k) % 600 for k in range(32))) for i in range(16)]

    async def body(engine: Engine) -> list[StepRecord]:
        await collect(await engine.generate("tiny-llama", TextPrompt(text="Load."), GREEDY))
        sched = scheduler(engine)
        first = len(sched.step_log)
        gens = [await engine.generate("tiny-llama", p, GREEDY) for p in short]
        await asyncio.gather(*(collect(g) for g in gens))
        return list(sched.step_log)[first:]

    # 8 prompts prefill together; the generator still holds them for a step after, and must take the next 8 then,
    # not once the first 8 decode. Each prompt fits in one chunk, so a step's prefill is what it admitted.
    steps = run_engine(tiny_models_dir, body, step_prefill_tokens=32, prefill_batch_size=8, prefix_cache_bytes=0)
    assert sum(s.prefilled for s in steps) == 16 * 31
    assert all(s.prefilled <= 32 for s in steps if s.decoded >= 8)


def test_a_crowd_waiting_on_few_running_sequences_gets_more_of_each_step(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> list[StepRecord]:
        async with decoding(engine, 1):
            sched = scheduler(engine)
            first = len(sched.step_log)
            gens = [await engine.generate("tiny-llama", arriving(i), GREEDY) for i in range(ARRIVALS)]
            await asyncio.gather(*(collect(g) for g in gens))
            return list(sched.step_log)[first:]

    steps = run_engine(tiny_models_dir, body, step_prefill_tokens=32, prefix_cache_bytes=0)
    prefilled = [s.prefilled for s in steps if s.prefilled]
    assert sum(prefilled) == ARRIVALS * (PROMPT_TOKENS - 1)
    assert all(p <= 32 * ARRIVALS for p in prefilled)  # at most (waiting / decoding) x the budget
    assert max(prefilled) > 32


def test_greedy_outputs_are_the_same_with_and_without_the_budget(tiny_models_dir: Path) -> None:
    prompts = [arriving(i) for i in range(3)] + [TextPrompt(text=f"Tell me about {i}.") for i in range(5)]

    async def body(engine: Engine) -> tuple[list[list[int]], int]:
        async with decoding(engine, len(prompts)):
            sched = scheduler(engine)
            first = len(sched.step_log)
            gens = [await engine.generate("tiny-llama", p, replace(GREEDY, max_tokens=16)) for p in prompts]
            outputs = [ids for ids, _, _ in await asyncio.gather(*(collect(g) for g in gens))]
            return outputs, max(s.prefilled for s in list(sched.step_log)[first:])

    budgeted, chunked = run_engine(tiny_models_dir, body, step_prefill_tokens=16, prefix_cache_bytes=0)
    unbudgeted, whole = run_engine(tiny_models_dir, body, step_prefill_tokens=0, prefix_cache_bytes=0)
    assert chunked <= 16 and whole >= PROMPT_TOKENS - 1
    assert budgeted == unbudgeted


def test_a_schema_constrained_answer_is_the_same_when_its_prompt_is_chunked(tiny_models_dir: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    params = replace(GREEDY, max_tokens=40, response_format={"type": "json_schema", "schema": schema})

    async def body(engine: Engine) -> str:
        async with decoding(engine, 1):
            _, text, _ = await collect(await engine.generate("tiny-llama", arriving(2), params))
            return text

    chunked = run_engine(tiny_models_dir, body, step_prefill_tokens=16, prefix_cache_bytes=0)
    whole = run_engine(tiny_models_dir, body, step_prefill_tokens=0, prefix_cache_bytes=0)
    assert chunked == whole
    assert isinstance(json.loads(chunked)["ok"], bool)


def test_a_prompt_cancelled_mid_prefill_frees_the_budget_and_keeps_its_kv(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> None:
        async with decoding(engine, 1):  # the budget holds
            sched = scheduler(engine)
            long = TextPrompt(token_ids=tuple(range(300, 1000)) * 2)  # 1400 tokens, 8 a step
            steps = sched.stats.steps
            victim = await engine.generate("tiny-llama", long, GREEDY)
            while sched.stats.steps < steps + 3:  # its first chunks are computed
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


def test_a_prompt_arriving_at_an_idle_model_is_prefilled_at_full_speed(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> list[StepRecord]:
        await collect(await engine.generate("tiny-llama", TextPrompt(text="Load."), GREEDY))
        sched = scheduler(engine)
        first = len(sched.step_log)
        await collect(await engine.generate("tiny-llama", arriving(0), GREEDY))
        return list(sched.step_log)[first:]

    steps = run_engine(tiny_models_dir, body, step_prefill_tokens=32, prefix_cache_bytes=0)
    # Nobody decodes while it prefills, so nobody waits: one step, not seven chunks of 32.
    assert [s.prefilled for s in steps if s.prefilled] == [PROMPT_TOKENS - 1]


# --- the policy alone ------------------------------------------------------------------------------------------


def prefill(start: int, end: int, chunk: int, budget: StepBudget) -> Prefill:
    p = Prefill(cast(Any, None), [], start, end)
    budget.cut(p, chunk)
    return p


def test_a_prompt_alone_gets_the_whole_budget() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    assert budget.chunk(1000, [], decoding=1, waiting=1) == 64
    assert budget.chunk(20, [], decoding=1, waiting=1) == 20


def test_short_prompts_share_a_step_padded_to_the_widest() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    first = prefill(0, 20, budget.chunk(20, [], decoding=1, waiting=1), budget)
    second = prefill(0, 20, budget.chunk(20, [first], decoding=1, waiting=1), budget)
    assert budget.chunk(20, [first, second], decoding=1, waiting=1) == 20  # 3 x 20 fits in 64
    assert budget.chunk(20, [first, second, second], decoding=1, waiting=1) == 0  # 4 x 20 does not: the 4th waits
    assert budget.chunk(21, [first], decoding=1, waiting=1) == 21
    assert budget.chunk(40, [first], decoding=1, waiting=1) == 0  # 2 x 40 > 64: it waits a step for the other one


def test_a_long_prompt_waits_for_the_one_prefilling_rather_than_keep_a_thin_chunk() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    long = prefill(0, 1000, budget.chunk(1000, [], decoding=1, waiting=1), budget)
    assert budget.left(long) == [64] * 15 + [40]
    assert budget.chunk(1000, [long], decoding=1, waiting=1) == 0
    long.computed = 960  # its last chunk: 40 tokens
    assert budget.chunk(1000, [long], decoding=1, waiting=1) == 0  # 2 x 40 > 64; a 32-token chunk would stay after it
    long.computed = 1000  # prefilled: only the prompt's last token is left, which goes with the decode
    assert budget.chunk(1000, [long], decoding=1, waiting=1) == 64


def test_two_long_prompts_share_the_budget_when_one_has_only_half_of_it() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    half = prefill(0, 1000, 32, budget)
    assert budget.chunk(1000, [half], decoding=1, waiting=1) == 32
    assert budget.chunk(1000, [half, half], decoding=1, waiting=1) == 0  # a third would be too thin


def test_more_prompts_waiting_than_sequences_decoding_multiply_the_budget() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    assert budget.chunk(127, [], decoding=8, waiting=8) == 64
    assert budget.chunk(127, [], decoding=2, waiting=8) == 127  # 4 x 64 a step
    first = prefill(0, 127, 127, budget)
    assert budget.chunk(127, [first], decoding=2, waiting=8) == 127  # 2 x 127 <= 256
    assert budget.chunk(127, [first, first], decoding=2, waiting=8) == 0


def test_a_step_that_decodes_nothing_prefills_as_the_generator_would() -> None:
    budget = StepBudget(64, step_size=512, batch_size=2)
    first = prefill(0, 1000, budget.chunk(1000, [], decoding=0, waiting=1), budget)
    assert budget.left(first)[0] == 512
    assert budget.chunk(300, [first], decoding=0, waiting=1) == 300
    assert budget.chunk(300, [first, first], decoding=0, waiting=1) == 0  # the generator prefills 2 prompts at once


def test_a_full_cache_hit_costs_no_budget_and_no_budget_means_no_cuts() -> None:
    budget = StepBudget(64, step_size=512, batch_size=8)
    long = prefill(0, 1000, 64, budget)
    assert budget.chunk(0, [long], decoding=1, waiting=1) == 512
    off = StepBudget(0, step_size=512, batch_size=8)
    assert off.chunk(1000, [long, long], decoding=1, waiting=1) == 512
    assert prefill(0, 1000, 512, off).cuts == ()
