"""KV-cache quantization (kv_bits) against float KV on SmolLM2-135M-Instruct with float32 weights, in one run.

For float, 8-bit and 4-bit KV (groups of 64):
- KV bytes per token, measured on a 1024-token prefill (and as the memory gate plans it), and the longest context
  whose KV fits a fixed budget;
- greedy agreement with float KV on a fixed prompt set: free-running (each answer as the server gives it; after a
  first differing token an answer goes its own way), teacher-forced (each position's greedy token given float
  KV's answer so far, in one forward pass: agreement per token, no cascade), and each setting's answers in one
  batch against one at a time;
- decode tok/s of BatchGenerator batches holding 1 x 1024, 1 x 4096 and 8 x 1024 tokens of context, timed in short
  blocks alternating between the settings (robust to a busy machine), and through the Engine (pool, scheduler):
  one stream at each context, 8 concurrent streams while all decode, and their output tok/s with prefill, the
  settings alternating within each repeat.
Prints tables (median and min-max) and writes JSON.

    python benchmarks/kv_quant.py            # re-executes itself with the system OpenBLAS preloaded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import load
from mlx_lm.generate import BatchGenerator, StopSequences

from mlx_manager import blas
from mlx_manager.engine.cpu_dtype import WeightPlan
from mlx_manager.engine.discovery import inspect_model
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.kv_quant import make_cache, with_kv
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.types import FLOAT_KV, KVSetting, SamplingParams, TextPrompt
from mlx_manager.manager.gguf_import import import_gguf

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / ".cache" / "test-assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = "SmolLM2-135M-Instruct-f32"
SETTINGS: dict[str, KVSetting] = {"float": FLOAT_KV, "8-bit": KVSetting(8, 64), "4-bit": KVSetting(4, 64)}
QUESTIONS = (
    "Explain how a refrigerator keeps food cold.",
    "Write a short poem about the sea at night.",
    "What are three tips for learning a new language?",
    "Summarise the plot of Romeo and Juliet in a few sentences.",
    "How do I reverse a list in Python? Show an example.",
    "Why is the sky blue?",
    "Give me a recipe for a simple tomato soup.",
    "What is the difference between weather and climate?",
    "Describe the water cycle to a ten-year-old.",
    "List some good habits for staying healthy while working at a desk.",
)


@dataclass
class Speed:
    setting: str
    repeat: int
    decode_tok_s: dict[str, float]  # one stream, by context length
    concurrent_decode_tok_s: float  # all streams decoding together
    concurrent_out_tok_s: float  # completion tokens over the whole wall time, prefill included


def _import_model(folder: Path) -> Path:
    target = folder / MODEL
    if not (target / "config.json").is_file():
        import_gguf(GGUF, folder, MODEL, dtype="float32")
    return target


def _engine(folder: Path, concurrency: int) -> Engine:
    # No prefix cache: every measurement prefills its prompts itself.
    scheduler = SchedulerConfig(max_num_seqs=concurrency, prefill_batch_size=concurrency, prefix_cache_bytes=0)
    pool = PoolConfig(max_models=1, memory_budget_bytes=8 << 30, cpu_dtype="keep", scheduler=scheduler)
    return Engine(EngineConfig(model_dirs=[folder.parent], hf_cache=None, pool=pool))


def _batch_cache(model: Any, setting: KVSetting) -> list[Any]:
    """A batch of one, as the scheduler runs it (BatchGenerator merges each sequence's caches)."""
    return [type(c).merge([c]) for c in make_cache(model, setting)]


# --- sizes ----------------------------------------------------------------------------------------------------


def sizes(folder: Path, budget: int, tokens: int = 1024) -> dict[str, dict[str, Any]]:
    """KV bytes per token, measured on a prefill of `tokens` (a multiple of the caches' 256-token steps, so no
    preallocated room is counted) and planned by the memory gate, and the context that fits `budget`."""
    model, _ = load(str(folder))
    info = inspect_model(folder, MODEL, "folder")
    ids = mx.array([[(i * 7919) % 40000 + 100 for i in range(tokens)]])
    out = {}
    for name, setting in SETTINGS.items():
        cache = _batch_cache(model, setting)
        mx.eval(model(ids, cache=cache))
        measured = sum(c.nbytes for c in cache) / tokens
        planned = with_kv(info, WeightPlan.as_stored(info), setting).kv_bytes_per_token
        fits = int(budget // measured)
        out[name] = {
            "kv_bytes_per_token": measured,
            "planned_bytes_per_token": planned,
            "context_in_budget": fits,
            "context_in_budget_capped": min(fits, info.context_length or fits),
        }
    return out


# --- greedy agreement -------------------------------------------------------------------------------------------


def prompt_ids(folder: Path) -> list[list[int]]:
    _, tokenizer = load(str(folder))
    return [
        list(tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True))
        for q in QUESTIONS
    ]


async def _greedy(
    folder: Path, setting: KVSetting, prompts: list[list[int]], max_tokens: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Greedy answers to all prompts at once (one batch), then to each alone."""
    engine = _engine(folder, len(prompts))
    await engine.start()
    try:
        await engine.load(MODEL, kv=setting)
        params = SamplingParams(temperature=0, max_tokens=max_tokens)

        async def answer(prompt: list[int]) -> list[int]:
            gen = await engine.generate(MODEL, TextPrompt(token_ids=tuple(prompt)), params)
            return [t async for chunk in gen for t in chunk.token_ids]

        together = list(await asyncio.gather(*(answer(p) for p in prompts)))
        return together, [await answer(p) for p in prompts]
    finally:
        await engine.stop()


def teacher_forced(folder: Path, setting: KVSetting, prompts: list[list[int]], answers: list[list[int]]) -> float:
    """Share of positions where `setting`'s greedy token equals float KV's answer, given that answer so far."""
    model, _ = load(str(folder))
    same = total = 0
    for prompt, answer in zip(prompts, answers, strict=True):
        if not answer:
            continue
        logits = model(mx.array([prompt + answer[:-1]]), cache=_batch_cache(model, setting))
        picked = mx.argmax(logits[0, len(prompt) - 1 :], axis=-1).tolist()
        same += sum(a == b for a, b in zip(picked, answer, strict=True))
        total += len(answer)
    return same / max(total, 1)


def agreement(reference: list[list[int]], other: list[list[int]]) -> dict[str, Any]:
    """Position by position against float KV's answers (a missing or extra token counts as a difference)."""
    same = sum(sum(a == b for a, b in zip(r, o, strict=False)) for r, o in zip(reference, other, strict=True))
    total = sum(max(len(r), len(o)) for r, o in zip(reference, other, strict=True))
    first = [
        next((i for i, (a, b) in enumerate(zip(r, o, strict=False)) if a != b), None)
        for r, o in zip(reference, other, strict=True)
    ]
    return {
        "token_agreement": same / max(total, 1),
        "identical_answers": sum(r == o for r, o in zip(reference, other, strict=True)),
        "first_difference": first,
    }


# --- speed ------------------------------------------------------------------------------------------------------


async def _stream(engine: Engine, prompt: TextPrompt, params: SamplingParams) -> list[float]:
    """The time each completion token arrived."""
    times = []
    async for chunk in await engine.generate(MODEL, prompt, params):
        times += [time.perf_counter()] * len(chunk.token_ids)
    return times


def _random_prompts(rng: random.Random, count: int, length: int) -> list[TextPrompt]:
    return [TextPrompt(token_ids=tuple(rng.randrange(256, 40000) for _ in range(length))) for _ in range(count)]


async def _speed(folder: Path, name: str, repeat: int, args: argparse.Namespace) -> Speed:
    engine = _engine(folder, args.concurrency)
    await engine.start()
    try:
        await engine.load(MODEL, kv=SETTINGS[name])
        rng = random.Random(f"{name}-{repeat}")
        params = SamplingParams(temperature=0, max_tokens=args.output_tokens, ignore_eos=True)
        await _stream(engine, _random_prompts(rng, 1, 16)[0], SamplingParams(temperature=0, max_tokens=4))
        single = {}
        for context in args.contexts:
            times = await _stream(engine, _random_prompts(rng, 1, context)[0], params)
            single[str(context)] = (len(times) - 1) / (times[-1] - times[0])
        start = time.perf_counter()
        streams = await asyncio.gather(
            *(_stream(engine, p, params) for p in _random_prompts(rng, args.concurrency, args.concurrent_context))
        )
        wall = time.perf_counter() - start
        # Decode alone: from the last stream's first token to the first stream's last, every stream decoding.
        begin, end = max(s[0] for s in streams), min(s[-1] for s in streams)
        inside = sum(1 for s in streams for t in s if begin < t <= end)
        return Speed(
            name,
            repeat,
            single,
            inside / (end - begin) if end > begin else float("nan"),
            sum(len(s) for s in streams) / wall,
        )
    finally:
        await engine.stop()
        mx.clear_cache()


def decode_steps(folder: Path, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Decode tok/s of BatchGenerator batches that already hold their context, per setting, timed in short blocks
    that alternate between the settings (the order rotating), so a busy machine slows each of them alike."""
    model, _ = load(str(folder))
    rng = random.Random(0)
    shapes = {f"1x{c}": (1, c) for c in args.contexts}
    shapes[f"{args.concurrency}x{args.concurrent_context}"] = (args.concurrency, args.concurrent_context)
    out: dict[str, dict[str, list[float]]] = {}
    for shape, (batch, context) in shapes.items():
        prompts = [[rng.randrange(256, 40000) for _ in range(context)] for _ in range(batch)]
        gens = {}
        for name, setting in SETTINGS.items():
            gen = BatchGenerator(model, completion_batch_size=batch, prefill_batch_size=batch, prefill_step_size=512)
            gen.insert(
                prompts,
                max_tokens=[1 << 20] * batch,
                caches=[make_cache(model, setting) for _ in prompts],
                stop_sequences=[StopSequences()] * batch,  # never stops
            )
            while len(gen.next()[1]) < batch:  # prefill until every sequence decodes
                pass
            gens[name] = gen
        names = list(gens)
        out[shape] = {name: [] for name in names}
        for block in range(args.step_blocks):
            for name in names[block % len(names) :] + names[: block % len(names)]:
                start = time.perf_counter()
                for _ in range(args.block_steps):
                    gens[name].next()
                out[shape][name].append(batch * args.block_steps / (time.perf_counter() - start))
        print(shape, {k: round(statistics.median(v), 1) for k, v in out[shape].items()}, flush=True)
        for gen in gens.values():
            gen.close()
        del gens
        mx.clear_cache()
    return out


# --- report -----------------------------------------------------------------------------------------------------


def _spread(values: list[float], digits: int = 1) -> str:
    if not values:  # --repeats 0: sizes and agreement only
        return "-"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def tables(
    size: dict[str, Any],
    agree: dict[str, Any],
    steps: dict[str, dict[str, list[float]]],
    speeds: list[Speed],
    args: argparse.Namespace,
) -> str:
    """Memory and agreement; decode speed (interleaved steps, then through the engine)."""
    budget_mb = args.budget_bytes / (1 << 20)
    lines = [
        f"| KV | bytes/token | vs float | context in {budget_mb:.0f} MiB | greedy agreement (free-running)"
        " | identical answers | teacher-forced agreement | identical answers, batched vs alone |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    float_bytes = size["float"]["kv_bytes_per_token"]
    n = len(QUESTIONS)
    for name in SETTINGS:
        s, a = size[name], agree[name]
        lines.append(
            f"| {name} | {s['kv_bytes_per_token']:,.0f} | {float_bytes / s['kv_bytes_per_token']:.2f}x"
            f" | {s['context_in_budget']:,} | {a['token_agreement']:.1%} | {a['identical_answers']}/{n}"
            f" | {a['teacher_forced']:.1%} | {a['batched_vs_alone']['identical_answers']}/{n} |"
        )
    shapes = list(steps)
    engine_single = [f"engine, 1 stream, {c} ctx" for c in args.contexts]
    engine_batch = f"engine, {args.concurrency} streams, {args.concurrent_context} ctx"
    lines += [
        "",
        "| KV | "
        + " | ".join(f"steps, {shape.replace('x', ' x ')} ctx" for shape in shapes)
        + " | "
        + " | ".join(engine_single)
        + f" | {engine_batch} | engine out tok/s, {args.concurrency} streams |",
        "| --- | " + " | ".join("---:" for _ in range(len(shapes) + len(engine_single) + 2)) + " |",
    ]
    for name in SETTINGS:
        rs = [r for r in speeds if r.setting == name]
        cells = [_spread(steps[shape][name]) for shape in shapes]
        cells += [_spread([r.decode_tok_s[str(c)] for r in rs]) for c in args.contexts]
        cells += [_spread([r.concurrent_decode_tok_s for r in rs]), _spread([r.concurrent_out_tok_s for r in rs])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _with_openblas() -> None:
    """Re-run this script with the system OpenBLAS preloaded (Linux), as the server runs."""
    lib = blas.find_openblas()
    if sys.platform.startswith("linux") and lib and not blas.openblas_active():
        env = {**os.environ, "LD_PRELOAD": ":".join(p for p in (lib, os.environ.get("LD_PRELOAD", "")) if p)}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-bytes", type=int, default=256 << 20, help="KV budget for the longest context.")
    parser.add_argument("--contexts", type=lambda s: [int(x) for x in s.split(",")], default=[1024, 4096])
    parser.add_argument("--concurrent-context", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--step-blocks", type=int, default=15, help="Alternating timed blocks per setting.")
    parser.add_argument("--block-steps", type=int, default=4, help="Decode steps per timed block.")
    parser.add_argument("--answer-tokens", type=int, default=64, help="Greedy tokens per agreement prompt.")
    parser.add_argument("--models-dir", type=Path, default=REPO / ".cache" / "bench-models" / "kv-quant")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "kv-quant.json")
    args = parser.parse_args()
    _with_openblas()
    folder = _import_model(args.models_dir)

    size = sizes(folder, args.budget_bytes)
    prompts = prompt_ids(folder)
    runs = {name: asyncio.run(_greedy(folder, s, prompts, args.answer_tokens)) for name, s in SETTINGS.items()}
    answers = {name: together for name, (together, _) in runs.items()}
    agree = {
        name: {
            **agreement(answers["float"], answers[name]),
            "teacher_forced": teacher_forced(folder, s, prompts, answers["float"]),
            # The same setting's answers in one batch against one at a time: rounding differences that a
            # quantization step can turn into another token.
            "batched_vs_alone": agreement(*runs[name]),
        }
        for name, s in SETTINGS.items()
    }
    for name in SETTINGS:
        print(
            f"{name}: {size[name]['kv_bytes_per_token']:,.0f} B/token, agreement {agree[name]['token_agreement']:.1%}"
        )

    steps = decode_steps(folder, args) if args.step_blocks else {}
    names = list(SETTINGS)
    speeds: list[Speed] = []
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            run = asyncio.run(_speed(folder, name, repeat, args))
            speeds.append(run)
            single = ", ".join(f"{v:.1f}" for v in run.decode_tok_s.values())
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: decode {single} tok/s, {args.concurrency} streams"
                f" {run.concurrent_decode_tok_s:.1f} tok/s decoding,"
                f" {run.concurrent_out_tok_s:.1f} out tok/s",
                flush=True,
            )
    report = tables(size, agree, steps, speeds, args)
    print()
    print(report)
    args.out.write_text(
        json.dumps(
            {
                "model": f"{MODEL} (float32 weights from {GGUF.name})",
                "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, {blas.describe()}",
                "mlx": version("mlx"),
                "mlx_lm": version("mlx-lm"),
                "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"},
                "sizes": size,
                "agreement": agree,
                "answers": {name: {"batched": a, "alone": b} for name, (a, b) in runs.items()},
                "decode_steps_tok_s": steps,
                "speed": [asdict(s) for s in speeds],
                "table": report,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
