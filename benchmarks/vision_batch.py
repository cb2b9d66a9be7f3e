"""Vision batching and reuse (#14), in process on the engine: 8 concurrent image requests vs the same 8 one at a
time (aggregate output tok/s), and the time to first token of an image seen before vs first sight.

Models, written offline with random weights: the tests' tiny Qwen2-VL and a shaped one (Qwen2.5-0.5B's
transformer behind an 8-block, 640-wide Qwen2-VL tower, ~0.41B parameters, float32). Every request gets fresh
images (never seen by the model) except the repeats measured for TTFT; replies are greedy, `ignore_eos`,
`max_tokens` fixed, so every request produces the same number of tokens.

    python benchmarks/vision_batch.py [--models tiny,shaped] [--json benchmarks/vision-batch.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.types import ChatPrompt, SamplingParams
from mlx_manager.testing.tiny_vlm import write_tiny_vlm

REPO = Path(__file__).resolve().parents[1]
SYSTEM = "You are a careful assistant. Describe the picture you are shown in plain words, one detail at a time."
# name -> (image side for throughput, image side for TTFT, max_tokens, rounds)
SETUPS = {"tiny": (112, 224, 64, 3), "shaped": (224, 448, 32, 1)}
CONCURRENT = 8


def image(seed: int, side: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def prompt(img: Image.Image, question: str = "What is in this picture?") -> ChatPrompt:
    content = [{"type": "image"}, {"type": "text", "text": question}]
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}]
    return ChatPrompt(messages=messages, images=[img])


async def run_one(engine: Engine, model: str, p: ChatPrompt, max_tokens: int) -> tuple[int, float]:
    """(tokens, seconds to the first token)."""
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    start = time.perf_counter()
    gen = await engine.generate(model, p, params)
    first = None
    tokens = 0
    async for chunk in gen:
        if chunk.token_ids and first is None:
            first = time.perf_counter() - start
        tokens += len(chunk.token_ids)
    return tokens, first or 0.0


async def measure(folder: Path, side: int, ttft_side: int, max_tokens: int, rounds: int, seed: int) -> dict[str, Any]:
    """Each round: 8 requests one at a time, then 8 at once, each with fresh images; the median round counts."""
    config = EngineConfig(
        model_dirs=[folder.parent],
        hf_cache=None,
        pool=PoolConfig(max_models=1, memory_budget_bytes=1 << 36, scheduler=SchedulerConfig()),
    )
    engine = Engine(config)
    await engine.start()
    model = folder.name
    try:
        await run_one(engine, model, prompt(image(seed, side)), 4)  # load and warm up
        serial, batched = [], []
        for r in range(rounds):
            base = seed + 1000 * (r + 1)
            start = time.perf_counter()
            alone = [await run_one(engine, model, prompt(image(base + i, side)), max_tokens) for i in range(CONCURRENT)]
            serial.append(sum(t for t, _ in alone) / (time.perf_counter() - start))
            start = time.perf_counter()
            jobs = [run_one(engine, model, prompt(image(base + 100 + i, side)), max_tokens) for i in range(CONCURRENT)]
            together = await asyncio.gather(*jobs)
            batched.append(sum(t for t, _ in together) / (time.perf_counter() - start))
            print(f"  {model} round {r + 1}: {serial[-1]:.1f} tok/s alone, {batched[-1]:.1f} at once", flush=True)
        scheduler = engine.pool.entries()[0].scheduler
        assert scheduler is not None
        peak = max((r.decoded for r in scheduler.step_log), default=0)
        first, repeat, new_question = [], [], []
        for trial in range(max(rounds, 2)):
            img = image(seed + 200 + trial, ttft_side)
            first.append((await run_one(engine, model, prompt(img), 4))[1])
            repeat.append((await run_one(engine, model, prompt(img), 4))[1])
            question = f"Trial {trial}: which colours stand out, and where?"
            new_question.append((await run_one(engine, model, prompt(img, question), 4))[1])
        features = getattr(scheduler, "features", None)
        serial_tps, batch_tps = statistics.median(serial), statistics.median(batched)
        return {
            "model": model,
            "image_side": side,
            "ttft_image_side": ttft_side,
            "max_tokens": max_tokens,
            "rounds": rounds,
            "one_at_a_time_rounds": [round(x, 2) for x in serial],
            "concurrent_rounds": [round(x, 2) for x in batched],
            "ttft_first_sight_trials": [round(x, 3) for x in first],
            "ttft_repeat_trials": [round(x, 3) for x in repeat],
            "one_at_a_time_tok_s": round(serial_tps, 2),
            "concurrent_tok_s": round(batch_tps, 2),
            "speedup": round(batch_tps / serial_tps, 2),
            "decode_batch_peak": peak,
            "ttft_first_sight_s": round(statistics.median(first), 3),
            "ttft_repeat_s": round(statistics.median(repeat), 3),
            "ttft_repeat_ratio": round(statistics.median(first) / statistics.median(repeat), 1),
            "ttft_same_image_new_question_s": round(statistics.median(new_question), 3),
            "ttft_new_question_ratio": round(statistics.median(first) / statistics.median(new_question), 1),
            "feature_cache": dict(vars(features.stats)) if features is not None else None,  # a copy: unload clears
        }
    finally:
        await engine.stop()


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | 1 at a time tok/s | 8 concurrent tok/s | speedup | peak batch | TTFT first sight | TTFT repeat"
        " | ratio | TTFT same image, new question | ratio |"
    )
    lines = [head, "|" + " --- |" * 10]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['one_at_a_time_tok_s']} | {r['concurrent_tok_s']} | {r['speedup']}x"
            f" | {r['decode_batch_peak']} | {r['ttft_first_sight_s']} s | {r['ttft_repeat_s']} s"
            f" | {r['ttft_repeat_ratio']}x | {r['ttft_same_image_new_question_s']} s"
            f" | {r['ttft_new_question_ratio']}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,shaped")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "vision-batch.json")
    parser.add_argument("--dir", type=Path, default=REPO / ".cache" / "bench-vlm")
    parser.add_argument("--max-tokens", type=int, default=0, help="override each model's max_tokens")
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        folder = write_tiny_vlm(args.dir, shaped=name == "shaped")
        side, ttft_side, max_tokens, rounds = SETUPS[name]
        max_tokens = args.max_tokens or max_tokens
        rows.append(asyncio.run(measure(folder, side, ttft_side, max_tokens, rounds, seed=1000)))
        print(table(rows[-1:]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    report = {"commit": commit.stdout.strip(), "machine": platform.platform(), "results": rows}
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(table(rows))


if __name__ == "__main__":
    main()
