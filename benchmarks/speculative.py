"""Speculative decoding (engine/speculative), single stream: speculation off vs prompt lookup vs draft model.

Two tasks on SmolLM2-135M-Instruct imported as float32 (from the test-asset GGUF, offline), greedy:
- copy-heavy: rewrite a given ~1,000-token code file with one small change (the reply copies its context);
- free chat: a question whose answer does not copy the prompt.
Each configuration runs in the in-process engine (the scheduler the server uses), one request at a time, after one
warm-up request; decode tok/s is output tokens over the time from the first output token to the last. Greedy
output must be the same in every configuration (checked, printed). There is no smaller real model with SmolLM2's
tokenizer offline, so "draft" uses the GGUF's own Q4_1 weights (SmolLM2 imported quantized: the same size class,
not a smaller model) as the draft model: it shows the draft-model path works end to end, not what a real small
draft model would gain.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libopenblas.so.0 .venv/bin/python benchmarks/speculative.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import mlx.core as mx

from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.engine.scheduler import SchedulerConfig
from mlx_manager.engine.speculative import SpeculativeConfig
from mlx_manager.engine.types import ChatPrompt, SamplingParams

REPO = Path(__file__).resolve().parents[1]
GGUF = REPO / ".cache" / "test-assets" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CODE_FILE = REPO / "src" / "mlx_manager" / "engine" / "step_budget.py"

COPY_TASK = (
    "Here is a Python file:\n\n```python\n{code}```\n\n"
    "Rewrite the whole file with one change: rename the class `StepBudget` to `PrefillBudget`. "
    "Output the complete file in a code block."
)
CHAT_TASK = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def import_models(models_dir: Path) -> tuple[Path, Path]:
    from mlx_manager.manager.gguf_import import import_gguf

    f32 = models_dir / "SmolLM2-135M-Instruct-f32"
    if not (f32 / "config.json").exists():
        import_gguf(GGUF, models_dir, f32.name, dtype="float32")
    q4 = models_dir / "SmolLM2-135M-Instruct-q4"
    if not (q4 / "config.json").exists():
        import_gguf(GGUF, models_dir, q4.name)
    return f32, q4


async def run_one(engine: Engine, model: str, text: str, tokens: int) -> dict[str, Any]:
    prompt = ChatPrompt(messages=[{"role": "user", "content": text}])
    start = time.perf_counter()
    gen = await engine.generate(model, prompt, SamplingParams(temperature=0, max_tokens=tokens))
    ids: list[int] = []
    first = last = start
    async for chunk in gen:
        if chunk.token_ids and not ids:
            first = time.perf_counter()
        ids += chunk.token_ids
        last = time.perf_counter()
    decode = max(last - first, 1e-9)
    return {"ids": ids, "tokens": len(ids), "ttft_s": first - start, "decode_tok_s": (len(ids) - 1) / decode}


def bench(models_dir: Path, model: str, spec: SpeculativeConfig, tasks: dict[str, str], tokens: int, runs: int):
    config = EngineConfig(
        model_dirs=[models_dir],
        hf_cache=None,
        pool=PoolConfig(max_models=1, memory_budget_bytes=1 << 33, scheduler=SchedulerConfig(speculative=spec)),
    )

    async def main() -> dict[str, Any]:
        engine = Engine(config)
        await engine.start()
        try:
            await run_one(engine, model, "Hello!", 8)  # load and warm up
            out: dict[str, Any] = {}
            for name, text in tasks.items():
                sched = engine.pool.entries()[0].scheduler
                assert sched is not None
                before = (sched.spec.stats.drafted, sched.spec.stats.accepted)
                results = [await run_one(engine, model, text, tokens) for _ in range(runs)]
                drafted = sched.spec.stats.drafted - before[0]
                accepted = sched.spec.stats.accepted - before[1]
                out[name] = {
                    "decode_tok_s": statistics.median(r["decode_tok_s"] for r in results),
                    "runs_tok_s": [r["decode_tok_s"] for r in results],
                    "tokens": results[0]["tokens"],
                    "ttft_s": statistics.median(r["ttft_s"] for r in results),
                    "drafted": drafted,
                    "accepted": accepted,
                    "ids": results[0]["ids"],
                }
            return out
        finally:
            await engine.stop()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO / ".cache" / "bench-models" / "speculative")
    parser.add_argument("--tokens", type=int, default=1200)
    parser.add_argument("--chat-tokens", type=int, default=400)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--no-draft", action="store_true", help="skip the draft-model configuration")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "speculative.json")
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    f32, q4 = import_models(args.models_dir)
    # Only the target in the engine's model folder: the draft model is named by path.
    engine_dir = args.models_dir / "target"
    engine_dir.mkdir(exist_ok=True)
    if not (engine_dir / f32.name).exists():
        (engine_dir / f32.name).symlink_to(f32)
    tasks = {"copy-heavy": COPY_TASK.format(code=CODE_FILE.read_text()), "free chat": CHAT_TASK}
    configs = {
        "off": SpeculativeConfig(mode="off"),
        "prompt lookup": SpeculativeConfig(mode="lookup"),
    }
    if not args.no_draft:
        configs["draft model (Q4_1 self-draft)"] = SpeculativeConfig(mode="draft", draft_model=q4, max_draft=4)
    results: dict[str, dict[str, Any]] = {}
    for name, spec in configs.items():
        per_task: dict[str, Any] = {}
        for task, text in tasks.items():
            limit = args.tokens if task == "copy-heavy" else args.chat_tokens
            per_task.update(bench(engine_dir, f32.name, spec, {task: text}, limit, args.runs))
        results[name] = per_task
        print(f"done: {name}", flush=True)
    base = results["off"]
    print(f"\n{'configuration':<32}{'task':<12}{'tokens':>7}{'tok/s':>9}{'speedup':>9}{'accept':>9}{'same':>6}")
    rows = []
    for name, per_task in results.items():
        for task, r in per_task.items():
            speedup = r["decode_tok_s"] / base[task]["decode_tok_s"]
            rate = r["accepted"] / r["drafted"] if r["drafted"] else 0.0
            same = r["ids"] == base[task]["ids"]
            print(
                f"{name:<32}{task:<12}{r['tokens']:>7}{r['decode_tok_s']:>9.1f}{speedup:>8.2f}x{rate:>8.0%}{same!s:>6}"
            )
            rows.append(
                {"config": name, "task": task, "speedup": speedup, "acceptance_rate": rate, "same_as_off": same}
                | {k: v for k, v in r.items() if k != "ids"}
            )
    meta = {"mlx": str(getattr(mx, "__version__", "?")), "machine": platform.machine()}
    meta["device"] = str(mx.default_device())
    meta["prompt_tokens_copy"] = len(tasks["copy-heavy"]) // 4
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
